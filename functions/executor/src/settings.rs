//! The function's configuration, from its environment.

use gameforge_aws::env::{EnvReader, SettingsError};
use gameforge_planner::FleetConfig;
use gameforge_planner::cpu_tier::CpuTier;

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
                Ok(mut fleet) => {
                    with_cpu_tier(&mut env, &mut fleet, any_tier_queue_url.is_some());
                    Some(fleet)
                }
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
            resources: Resources { ledger_table, job_queue_url, any_tier_queue_url, retry_queue_url, alert_bus },
            control_dead_letter_url,
        })
    }
}

/// The fleet's CPU tier is the stack's `CpuTier` parameter (`GAMEFORGE_CPU_TIER`), which submission routes by and
/// the template's CPU service runs; a fleet file may repeat it, but not differ from it, and may not have one the
/// stack lacks: that tier would never be given a job.
fn with_cpu_tier<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>, fleet: &mut FleetConfig, routed: bool) {
    let stack_tier = match env.optional("GAMEFORGE_CPU_TIER").filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(text) => match CpuTier::from_json(&text) {
            Ok(tier) => Some(tier),
            Err(e) => return env.problem(format!("GAMEFORGE_CPU_TIER: {e}")),
        },
    };
    match (&fleet.cpu_tier, stack_tier) {
        (None, None) => {}
        (None, Some(tier)) => fleet.cpu_tier = Some(tier),
        (Some(own), Some(tier)) if *own == tier => {}
        (Some(_), Some(_)) => env.problem(
            "GAMEFORGE_FLEET_CONFIG: cpu_tier differs from GAMEFORGE_CPU_TIER (the stack's CpuTier parameter), which \
             submission routes by; leave it out of the fleet file or make it the same",
        ),
        (Some(_), None) => env.problem(
            "GAMEFORGE_FLEET_CONFIG: cpu_tier needs the stack's CpuTier parameter (GAMEFORGE_CPU_TIER): without it no \
             job is routed to the tier and no CPU service is deployed",
        ),
    }
    if fleet.cpu_tier.is_some() && !routed {
        env.problem("GAMEFORGE_CPU_TIER needs GAMEFORGE_ANY_TIER_QUEUE_URL, the backlog the tier serves");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleets_cpu_tier_is_the_stacks_and_a_fleet_file_may_only_repeat_it() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json");
        let fleet: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let tier = serde_json::json!({
            "ecs_service": "gameforge-sdxl-cpu-worker", "vcpus": 16, "memory_gib": 64, "price_per_hour": 0.93,
            "pace": {"step_seconds_per_megapixel": 9.0, "decode_seconds_per_megapixel": 30.0, "job_seconds": 3.0},
            "budget": {"max_megapixel_evaluations": 2.2, "max_megapixels": 0.27},
            "enter": {"oldest_job_waited": "10m", "leave_after": "5m"},
            "max_workers": 4, "target_backlog_per_worker": 8
        });
        let read = |fleet: &serde_json::Value, stack_tier: Option<&serde_json::Value>| {
            let (fleet, stack_tier) = (fleet.to_string(), stack_tier.map(|t| t.to_string()));
            Settings::from_lookup(move |name| match name {
                "GAMEFORGE_FLEET_CONFIG" => Some(fleet.clone()),
                "GAMEFORGE_CPU_TIER" => stack_tier.clone(),
                other if other.starts_with("GAMEFORGE_") && other != "GAMEFORGE_ALERT_BUS" => Some("x".into()),
                _ => None,
            })
        };
        assert!(read(&fleet, None).unwrap().fleet.cpu_tier.is_none());
        let settings = read(&fleet, Some(&tier)).unwrap();
        assert_eq!(settings.fleet.cpu_tier.unwrap().ecs_service, "gameforge-sdxl-cpu-worker", "the stack's tier");
        let mut repeated = fleet.clone();
        repeated["cpu_tier"] = tier.clone();
        assert!(read(&repeated, Some(&tier)).is_ok(), "the fleet file may repeat it");
        let mut other = tier.clone();
        other["max_workers"] = 9.into();
        let err = read(&repeated, Some(&other)).unwrap_err().to_string();
        assert!(err.contains("cpu_tier differs from GAMEFORGE_CPU_TIER"), "{err}");
        let err = read(&repeated, None).unwrap_err().to_string();
        assert!(err.contains("cpu_tier needs the stack's CpuTier parameter"), "{err}");
        other["vcpus"] = 99.into();
        let err = read(&fleet, Some(&other)).unwrap_err().to_string();
        assert!(err.contains("GAMEFORGE_CPU_TIER") && err.contains("cpu_tier.vcpus"), "{err}");
    }
}
