//! The function's configuration, from its environment (set by the template on AWS, by the local runner here).

use gameforge_aws::env::{EnvReader, SettingsError};
use gameforge_contract::S3Uri;
use gameforge_jobs::AnyTier;

use crate::handler::HandlerConfig;
use crate::rate_limit::TokenBucket;

/// A slower rate would make a caller wait hours for one token; a faster one is no limit at all.
const RATE_RANGE: (f64, f64) = (0.001, 10_000.0);
const BURST_RANGE: (f64, f64) = (1.0, 100_000.0);
/// A function URL carries at most 6 MB of request payload.
const BODY_RANGE: (f64, f64) = (1.0, 6_291_456.0);

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub job_queue_url: String,
    pub any_tier: Option<AnyTier>,
    pub jobs_table: String,
    pub rate_limit_table: String,
    pub output: Option<S3Uri>,
    pub default_model: Option<String>,
    pub bucket: TokenBucket,
    pub max_body_bytes: usize,
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new(&lookup);
        let job_queue_url = env.required("GAMEFORGE_JOB_QUEUE_URL");
        let any_tier = AnyTier::from_env(&mut env);
        let jobs_table = env.required("GAMEFORGE_JOBS_TABLE");
        let rate_limit_table = env.required("GAMEFORGE_RATE_LIMIT_TABLE");
        let output = env.required("GAMEFORGE_OUTPUT_PREFIX");
        let output = S3Uri::parse(&output).ok();
        if output.is_none() {
            env.problem("GAMEFORGE_OUTPUT_PREFIX is not an s3://bucket/prefix location");
        }
        let default_model = env.optional("GAMEFORGE_DEFAULT_MODEL");
        let number =
            |env: &mut EnvReader<_>, name: &str, default: f64, (low, high): (f64, f64)| match env.optional(name) {
                None => default,
                Some(v) => v.trim().parse::<f64>().ok().filter(|n| (low..=high).contains(n)).unwrap_or_else(|| {
                    env.problem(format!("{name} must be a number from {low} to {high}"));
                    default
                }),
            };
        let rate = number(&mut env, "GAMEFORGE_RATE_LIMIT_PER_SECOND", 5.0, RATE_RANGE);
        let burst = number(&mut env, "GAMEFORGE_RATE_LIMIT_BURST", 20.0, BURST_RANGE);
        let max_body_bytes = number(&mut env, "GAMEFORGE_MAX_BODY_BYTES", 65_536.0, BODY_RANGE) as usize;
        env.finish()?;
        Ok(Self {
            job_queue_url,
            any_tier,
            jobs_table,
            rate_limit_table,
            output,
            default_model,
            bucket: TokenBucket { rate, burst },
            max_body_bytes,
        })
    }

    pub fn handler_config(&self) -> HandlerConfig {
        HandlerConfig {
            output: self.output.clone().expect("checked when read"),
            default_model: self.default_model.clone(),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_named_at_once() {
        let error = Settings::from_lookup(|name| match name {
            "GAMEFORGE_OUTPUT_PREFIX" => Some("not-s3".into()),
            "GAMEFORGE_RATE_LIMIT_PER_SECOND" => Some("-1".into()),
            _ => None,
        })
        .unwrap_err();
        let text = error.to_string();
        for expected in [
            "GAMEFORGE_JOB_QUEUE_URL",
            "GAMEFORGE_JOBS_TABLE",
            "GAMEFORGE_RATE_LIMIT_TABLE",
            "GAMEFORGE_OUTPUT_PREFIX is not",
            "GAMEFORGE_RATE_LIMIT_PER_SECOND",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }

    #[test]
    fn extreme_rates_and_sizes_are_refused_naming_their_range() {
        let error = Settings::from_lookup(|name| match name {
            "GAMEFORGE_RATE_LIMIT_PER_SECOND" => Some("1e-320".into()),
            "GAMEFORGE_RATE_LIMIT_BURST" => Some("1e300".into()),
            "GAMEFORGE_MAX_BODY_BYTES" => Some("1e30".into()),
            _ => Some("s3://bucket/images".into()),
        })
        .unwrap_err();
        let text = error.to_string();
        for expected in [
            "GAMEFORGE_RATE_LIMIT_PER_SECOND must be a number from 0.001 to 10000",
            "GAMEFORGE_RATE_LIMIT_BURST must be a number from 1 to 100000",
            "GAMEFORGE_MAX_BODY_BYTES must be a number from 1 to 6291456",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
