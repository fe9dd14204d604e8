//! The function's configuration, from its environment (set by the template on AWS, by the local runner here).

use std::time::Duration;

use gameforge_aws::env::{EnvReader, SettingsError};

use crate::handler::HandlerConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub signals_queue_url: String,
    pub signals_dead_letter_url: String,
    pub control_queue_url: String,
    pub dedup_table: String,
    pub fleet: String,
    pub claim_lease: Duration,
    /// How long a processed event is remembered; longer than any redelivery (EventBridge retries for 24 h,
    /// the signals queue keeps a message for 4 days).
    pub dedup_retention: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new(lookup);
        let signals_queue_url = env.required("GAMEFORGE_SIGNALS_QUEUE_URL");
        let signals_dead_letter_url = env.required("GAMEFORGE_SIGNALS_DLQ_URL");
        let control_queue_url = env.required("GAMEFORGE_CONTROL_QUEUE_URL");
        let dedup_table = env.required("GAMEFORGE_SIGNAL_DEDUP_TABLE");
        let claim_lease = env.seconds("GAMEFORGE_SIGNAL_CLAIM_LEASE_SECONDS", 30);
        let dedup_retention = env.seconds("GAMEFORGE_SIGNAL_DEDUP_RETENTION_SECONDS", 7 * 24 * 3600);
        let fleet = env.optional("GAMEFORGE_FLEET").unwrap_or_else(|| "sdxl".into());
        env.finish()?;
        Ok(Self {
            signals_queue_url,
            signals_dead_letter_url,
            control_queue_url,
            dedup_table,
            fleet,
            claim_lease,
            dedup_retention,
        })
    }

    pub fn handler_config(&self) -> HandlerConfig {
        HandlerConfig { fleet: self.fleet.clone(), claim_lease: self.claim_lease, ..HandlerConfig::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_missing_variable() {
        let error = Settings::from_lookup(|name| (name == "GAMEFORGE_CONTROL_QUEUE_URL").then(|| "http://q".into()))
            .unwrap_err();
        assert_eq!(
            error.0,
            vec![
                "GAMEFORGE_SIGNALS_QUEUE_URL is missing",
                "GAMEFORGE_SIGNALS_DLQ_URL is missing",
                "GAMEFORGE_SIGNAL_DEDUP_TABLE is missing"
            ]
        );
    }

    #[test]
    fn reads_a_complete_environment() {
        let settings = Settings::from_lookup(|name| match name {
            "GAMEFORGE_FLEET" => Some("art".into()),
            "GAMEFORGE_SIGNAL_CLAIM_LEASE_SECONDS" => Some("45".into()),
            "GAMEFORGE_SIGNAL_DEDUP_RETENTION_SECONDS" => None,
            other if other.starts_with("GAMEFORGE_") => Some(format!("value-of-{other}")),
            _ => None,
        })
        .unwrap();
        assert_eq!(settings.fleet, "art");
        assert_eq!(settings.claim_lease, Duration::from_secs(45));
        assert_eq!(settings.dedup_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(settings.dedup_table, "value-of-GAMEFORGE_SIGNAL_DEDUP_TABLE");
    }

    #[test]
    fn rejects_durations_that_are_not_numbers() {
        let error = Settings::from_lookup(|name| match name {
            "GAMEFORGE_SIGNAL_CLAIM_LEASE_SECONDS" => Some("half a minute".into()),
            "GAMEFORGE_SIGNAL_DEDUP_RETENTION_SECONDS" => None,
            other if other.starts_with("GAMEFORGE_") => Some(format!("value-of-{other}")),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(error.0, vec!["GAMEFORGE_SIGNAL_CLAIM_LEASE_SECONDS is not a number of seconds"]);
    }
}
