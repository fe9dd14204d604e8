//! The fleet's state between invocations, saved in the ledger with a version for conditional writes.

use chrono::{DateTime, Utc};
use gameforge_planner::FleetConfig;
use gameforge_planner::placement::PlacementState;
use gameforge_planner::scaling::ScaleMemory;
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
    /// Incremented on every save.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    pub code: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

impl FleetState {
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
            version: 0,
        }
    }
}
