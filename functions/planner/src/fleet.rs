//! The fleet as it stands: its workers and where they run.

use chrono::{DateTime, Utc};
use gameforge_contract::CapacityType;
use serde::{Deserialize, Serialize};

use crate::offering::Offering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Launched, not yet serving.
    Pending,
    Running,
    /// Finishing its job before it goes; no longer counted as capacity.
    Draining,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub instance_id: String,
    pub offering: Offering,
    pub state: WorkerState,
    pub launched_at: DateTime<Utc>,
    /// When draining began, for workers that are draining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_since: Option<DateTime<Utc>>,
}

impl Worker {
    /// Counts toward the fleet's capacity.
    pub fn is_active(&self) -> bool {
        self.state != WorkerState::Draining
    }
}

/// Summaries the planner needs from a list of workers.
pub trait Workers {
    fn active(&self) -> Vec<&Worker>;
    fn active_in(&self, region: &str) -> usize;
    fn active_of(&self, capacity_type: CapacityType) -> usize;
}

impl Workers for [Worker] {
    fn active(&self) -> Vec<&Worker> {
        self.iter().filter(|w| w.is_active()).collect()
    }

    fn active_in(&self, region: &str) -> usize {
        self.iter().filter(|w| w.is_active() && w.offering.region == region).count()
    }

    fn active_of(&self, capacity_type: CapacityType) -> usize {
        self.iter().filter(|w| w.is_active() && w.offering.capacity_type == capacity_type).count()
    }
}
