//! The function's configuration, from its environment.

use gameforge_aws::env::{EnvReader, SettingsError};
use gameforge_planner::FleetConfig;

use crate::aws::Resources;

#[derive(Debug, Clone)]
pub struct Settings {
    pub fleet: FleetConfig,
    pub resources: Resources,
    /// Where malformed control jobs go, with their reason.
    pub control_dead_letter_url: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `GAMEFORGE_FLEET_CONFIG` is a path to the fleet file or the JSON itself.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new(lookup);
        let fleet_source = env.required("GAMEFORGE_FLEET_CONFIG");
        let ledger_table = env.required("GAMEFORGE_LEDGER_TABLE");
        let job_queue_url = env.required("GAMEFORGE_JOB_QUEUE_URL");
        let retry_queue_url = env.required("GAMEFORGE_RETRY_QUEUE_URL");
        let control_dead_letter_url = env.required("GAMEFORGE_CONTROL_DLQ_URL");
        let alert_bus = env.optional("GAMEFORGE_ALERT_BUS").unwrap_or_else(|| "default".into());
        let fleet = if fleet_source.is_empty() {
            None
        } else {
            let bytes = if fleet_source.trim_start().starts_with('{') {
                Ok(fleet_source.clone().into_bytes())
            } else {
                std::fs::read(&fleet_source).map_err(|e| format!("GAMEFORGE_FLEET_CONFIG {fleet_source}: {e}"))
            };
            match bytes.and_then(|b| FleetConfig::from_json(&b).map_err(|e| e.to_string())) {
                Ok(fleet) => Some(fleet),
                Err(problem) => {
                    env.problem(problem);
                    None
                }
            }
        };
        env.finish()?;
        let fleet = fleet.ok_or_else(|| SettingsError(vec!["GAMEFORGE_FLEET_CONFIG is missing".into()]))?;
        Ok(Self {
            fleet,
            resources: Resources { ledger_table, job_queue_url, retry_queue_url, alert_bus },
            control_dead_letter_url,
        })
    }
}
