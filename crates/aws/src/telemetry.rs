//! Logging: JSON lines for machines (Lambda, ECS), readable lines for people at a terminal.
//!
//! A Lambda function's lines follow the AWS Lambda Powertools conventions: every line of an invocation carries
//! `function_request_id`, `xray_trace_id`, `cold_start` and `service` (under `span`), so that one request's lines
//! are found together in CloudWatch Logs Insights and beside its X-Ray trace.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

static SERVICE: OnceLock<&'static str> = OnceLock::new();
static INVOKED: AtomicBool = AtomicBool::new(false);

/// JSON logs on stdout, one object per event with its fields at the top level and the invocation's under `span`.
/// The level is Lambda's `AWS_LAMBDA_LOG_LEVEL` (the function's advanced logging controls) when set, else
/// `RUST_LOG`, else `info`. Safe to call more than once; only the first call installs a subscriber.
pub fn init_json(service: &'static str) {
    let _ = SERVICE.set(service);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref()))
        .with_writer(std::io::stdout)
        .try_init();
}

/// Human-readable logs on stderr for command-line tools (default `warn`, so that stdout stays for results).
pub fn init_terminal() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The span an invocation's handler runs in: its fields are on every line it logs. The first invocation of the
/// process is the cold start. At `error` level so that no log level filters it away.
pub fn invocation_span(request_id: &str, xray_trace_id: Option<&str>) -> tracing::Span {
    let cold_start = !INVOKED.swap(true, Ordering::Relaxed);
    tracing::error_span!(
        "invocation",
        service = SERVICE.get().copied().unwrap_or("gameforge"),
        function_request_id = request_id,
        xray_trace_id = xray_trace_id.unwrap_or_default(),
        cold_start,
    )
}

fn filter(lambda_level: Option<&str>) -> EnvFilter {
    let level = lambda_level.and_then(lambda_log_level);
    match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    }
}

/// Lambda's application log levels in tracing's terms; `FATAL` has no equivalent and keeps errors.
fn lambda_log_level(level: &str) -> Option<&'static str> {
    match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_levels_map_to_tracings_and_unknown_ones_are_ignored() {
        assert_eq!(lambda_log_level("DEBUG"), Some("debug"));
        assert_eq!(lambda_log_level(" warn "), Some("warn"));
        assert_eq!(lambda_log_level("FATAL"), Some("error"));
        assert_eq!(lambda_log_level("LOUD"), None);
        assert_eq!(filter(Some("ERROR")).to_string(), "error");
    }
}
