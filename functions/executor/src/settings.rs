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
        let any_tier_queue_url = env.optional("GAMEFORGE_ANY_TIER_QUEUE_URL");
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
                // Refused rather than ignored: an operator who configured a fallback must not believe it runs.
                Ok(fleet) if fleet.cpu_tier.is_some() => {
                    env.problem(
                        "GAMEFORGE_FLEET_CONFIG: cpu_tier is not acted on by this executor yet (jobs are routed and \
                         the tier planned, but no CPU worker is started); remove it",
                    );
                    None
                }
                Ok(fleet) => Some(fleet),
                Err(problem) => {
                    env.problem(problem);
                    None
                }
            }
        };
        env.finish()?;
        let fleet = fleet.ok_or_else(|| SettingsError(vec!["GAMEFORGE_FLEET_CONFIG is missing".into()]))?;
        // A fleet without a CPU tier has no eligible backlog to read: one call less per reconcile.
        let any_tier_queue_url = any_tier_queue_url.filter(|_| fleet.cpu_tier.is_some());
        Ok(Self {
            fleet,
            resources: Resources { ledger_table, job_queue_url, any_tier_queue_url, retry_queue_url, alert_bus },
            control_dead_letter_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(fleet: String) -> impl Fn(&str) -> Option<String> {
        move |name| match name {
            "GAMEFORGE_FLEET_CONFIG" => Some(fleet.clone()),
            other if other.starts_with("GAMEFORGE_") && other != "GAMEFORGE_ALERT_BUS" => Some("x".into()),
            _ => None,
        }
    }

    #[test]
    fn a_fleet_file_with_a_cpu_tier_is_refused_until_the_executor_runs_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json");
        let mut fleet: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(Settings::from_lookup(lookup(fleet.to_string())).is_ok());
        fleet["cpu_tier"] = serde_json::json!({
            "ecs_service": "gameforge-sdxl-cpu-worker", "vcpus": 16, "memory_gib": 64, "price_per_hour": 0.93,
            "pace": {"step_seconds_per_megapixel": 9.0, "decode_seconds_per_megapixel": 30.0, "job_seconds": 3.0},
            "budget": {"max_megapixel_evaluations": 2.2, "max_megapixels": 0.27},
            "enter": {"oldest_job_waited": "10m", "leave_after": "5m"},
            "max_workers": 4, "target_backlog_per_worker": 8
        });
        let err = Settings::from_lookup(lookup(fleet.to_string())).unwrap_err().to_string();
        assert!(err.contains("cpu_tier is not acted on"), "{err}");
    }
}
