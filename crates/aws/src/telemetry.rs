//! Logging: JSON lines for machines (Lambda, ECS), readable lines for people at a terminal.

use tracing_subscriber::EnvFilter;

/// JSON logs on stdout, one object per event with its fields at the top level, filtered by `RUST_LOG`
/// (default `info`). Safe to call more than once; only the first call installs a subscriber.
pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// Human-readable logs on stderr for command-line tools (default `warn`, so that stdout stays for results).
pub fn init_terminal() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
