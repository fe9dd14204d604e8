//! The fleet's state between invocations, saved in the ledger with a version for conditional writes.

use chrono::{DateTime, Utc};
use gameforge_planner::FleetConfig;
use gameforge_planner::cpu_tier::TierMemory;
use gameforge_planner::fleet::Worker;
use gameforge_planner::placement::PlacementState;
use gameforge_planner::scaling::{Demand, ScaleMemory};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetState {
    pub placement: PlacementState,
    /// Workers wanted, from the last reconcile.
    pub desired: u32,
    /// What scaling remembers between reconciles (a state saved before it existed reads as a fresh memory).
    #[serde(default)]
    pub scale: ScaleMemory,
    /// Acquisition rounds that fell short in a row; drives the backoff.
    #[serde(default)]
    pub acquire_round: u32,
    /// Migrations for want of capacity since a launch last gained a worker: bounds the tour of the regions when
    /// capacity is short everywhere.
    #[serde(default)]
    pub fruitless_migrations: u32,
    /// No launch before this, unless new facts call for one (an interruption, a retry that is due).
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Launches stopped because the configuration is wrong, until an operator clears it.
    #[serde(default)]
    pub config_error: Option<ConfigError>,
    /// When each kind of alert was last raised, so that a lasting condition alerts once an hour, not once a minute.
    #[serde(default)]
    pub alerted: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// What operators asked for and the executor honours until undone.
    #[serde(default)]
    pub operator: Overrides,
    /// The fleet as the last invocation saw it, for operators (`gameforge fleet status`), who cannot list EC2.
    #[serde(default)]
    pub seen: Option<Seen>,
    /// The CPU fallback tier, for fleets that have one.
    #[serde(default)]
    pub cpu: CpuTierState,
    /// Incremented on every save.
    pub version: u64,
}

/// The CPU tier between reconciles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTierState {
    /// CPU workers wanted, from the last reconcile.
    #[serde(default)]
    pub desired: u32,
    /// Where the tier runs while it is on.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub memory: TierMemory,
}

/// An operator's standing instructions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// No launches while set.
    #[serde(default)]
    pub paused: Option<Paused>,
    /// The fleet stays in this region.
    #[serde(default)]
    pub pinned: Option<Pinned>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub region: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The fleet's live instances and the backlog as one invocation saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub at: DateTime<Utc>,
    pub workers: Vec<Worker>,
    /// The backlog as last read (a reconcile reads it), and when.
    #[serde(default)]
    pub demand: Option<Demand>,
    #[serde(default)]
    pub demand_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    pub code: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A lasting condition is alerted once per this long, not once per reconcile.
pub const ALERT_REPEAT: chrono::Duration = chrono::Duration::hours(1);

impl FleetState {
    /// Whether the alert `key` may be raised at `now`: never raised, or last raised [`ALERT_REPEAT`] ago or more.
    pub fn alert_due(&self, key: &str, now: DateTime<Utc>) -> bool {
        self.alerted.get(key).is_none_or(|at| now - *at >= ALERT_REPEAT)
    }

    /// A fleet that has never run: at home, at its minimum size.
    pub fn new(config: &FleetConfig, now: DateTime<Utc>) -> Self {
        Self {
            placement: PlacementState::at_home(config, now),
            desired: config.workers.min,
            scale: ScaleMemory::default(),
            acquire_round: 0,
            fruitless_migrations: 0,
            next_attempt_at: None,
            config_error: None,
            alerted: Default::default(),
            operator: Overrides::default(),
            seen: None,
            cpu: CpuTierState::default(),
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_condition_alerts_once_an_hour() {
        let at = |minutes: i64| {
            "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minutes)
        };
        let config = gameforge_planner::FleetConfig::from_json(
            &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json")).unwrap(),
        )
        .unwrap();
        let mut state = FleetState::new(&config, at(0));
        assert!(state.alert_due("Quota/us-east-1", at(0)));
        state.alerted.insert("Quota/us-east-1".into(), at(0));
        assert!(!state.alert_due("Quota/us-east-1", at(59)));
        assert!(state.alert_due("NoRegion/all", at(59)), "another condition is not held back");
        assert!(state.alert_due("Quota/us-east-1", at(60)));
    }
}
