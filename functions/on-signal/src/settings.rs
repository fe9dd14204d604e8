//! The function's configuration, from its environment (set by the template on AWS, by the local runner here).

use std::time::Duration;

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

#[derive(Debug, thiserror::Error)]
#[error("missing or invalid environment: {}", .0.join(", "))]
pub struct SettingsError(pub Vec<String>);

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut problems = Vec::new();
        let mut required = |name: &str| {
            lookup(name).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| {
                problems.push(name.to_owned());
                String::new()
            })
        };
        let signals_queue_url = required("SIGNALS_QUEUE_URL");
        let signals_dead_letter_url = required("SIGNALS_DLQ_URL");
        let control_queue_url = required("CONTROL_QUEUE_URL");
        let dedup_table = required("SIGNAL_DEDUP_TABLE");
        let seconds = |name: &str, default: u64, problems: &mut Vec<String>| match lookup(name) {
            None => Duration::from_secs(default),
            Some(v) => v.trim().parse().map(Duration::from_secs).unwrap_or_else(|_| {
                problems.push(format!("{name} (not a number of seconds)"));
                Duration::from_secs(default)
            }),
        };
        let claim_lease = seconds("SIGNAL_CLAIM_LEASE_SECONDS", 30, &mut problems);
        let dedup_retention = seconds("SIGNAL_DEDUP_RETENTION_SECONDS", 7 * 24 * 3600, &mut problems);
        if !problems.is_empty() {
            return Err(SettingsError(problems));
        }
        Ok(Self {
            signals_queue_url,
            signals_dead_letter_url,
            control_queue_url,
            dedup_table,
            fleet: lookup("GAMEFORGE_FLEET").filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "sdxl".into()),
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
        let error = Settings::from_lookup(|name| (name == "CONTROL_QUEUE_URL").then(|| "http://q".into())).unwrap_err();
        assert_eq!(error.0, vec!["SIGNALS_QUEUE_URL", "SIGNALS_DLQ_URL", "SIGNAL_DEDUP_TABLE"]);
    }

    #[test]
    fn reads_a_complete_environment() {
        let settings = Settings::from_lookup(|name| match name {
            "GAMEFORGE_FLEET" => Some("art".into()),
            "SIGNAL_CLAIM_LEASE_SECONDS" => Some("45".into()),
            "SIGNAL_DEDUP_RETENTION_SECONDS" => None,
            other => Some(format!("value-of-{other}")),
        })
        .unwrap();
        assert_eq!(settings.fleet, "art");
        assert_eq!(settings.claim_lease, Duration::from_secs(45));
        assert_eq!(settings.dedup_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(settings.dedup_table, "value-of-SIGNAL_DEDUP_TABLE");
    }

    #[test]
    fn rejects_durations_that_are_not_numbers() {
        let error = Settings::from_lookup(|name| match name {
            "SIGNAL_CLAIM_LEASE_SECONDS" => Some("half a minute".into()),
            "SIGNAL_DEDUP_RETENTION_SECONDS" => None,
            other => Some(format!("value-of-{other}")),
        })
        .unwrap_err();
        assert_eq!(error.0, vec!["SIGNAL_CLAIM_LEASE_SECONDS (not a number of seconds)"]);
    }
}
