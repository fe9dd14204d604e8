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

/// Why a worker is drained without being interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainReason {
    /// It runs outside the active region, which now serves the whole fleet.
    OutsideActiveRegion,
    /// The fleet is larger than it needs to be.
    ScaleIn,
    /// An operator asked for it (a `drain_instance` control job).
    Requested,
}

/// The workers the fleet no longer needs, in the order to drain them: every worker outside the `active` region once
/// the active region's own serve the whole `desired` fleet (launched is not enough: the others keep serving until
/// then), and the active region's surplus, on-demand first (it costs more), newest first (the oldest are warm).
pub fn surplus<'a>(workers: &'a [Worker], active: &str, desired: usize) -> Vec<(&'a Worker, DrainReason)> {
    let mut victims = Vec::new();
    let serving_here =
        workers.iter().filter(|w| w.state == WorkerState::Running && w.offering.region == active).count();
    if serving_here >= desired {
        victims.extend(
            workers
                .iter()
                .filter(|w| w.is_active() && w.offering.region != active)
                .map(|w| (w, DrainReason::OutsideActiveRegion)),
        );
    }
    let mut here: Vec<&Worker> = workers.iter().filter(|w| w.is_active() && w.offering.region == active).collect();
    if here.len() > desired {
        here.sort_by(|a, b| {
            let on_demand = |w: &Worker| w.offering.capacity_type == CapacityType::OnDemand;
            on_demand(b).cmp(&on_demand(a)).then(b.launched_at.cmp(&a.launched_at))
        });
        let extra = here.len() - desired;
        victims.extend(here.into_iter().take(extra).map(|w| (w, DrainReason::ScaleIn)));
    }
    victims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, region: &str, capacity_type: CapacityType, state: WorkerState, minute: i64) -> Worker {
        Worker {
            instance_id: id.into(),
            offering: Offering::new(region, &format!("{region}a"), "g5.xlarge", capacity_type),
            state,
            launched_at: "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minute),
            draining_since: None,
        }
    }

    fn ids(victims: &[(&Worker, DrainReason)]) -> Vec<(String, DrainReason)> {
        victims.iter().map(|(w, why)| (w.instance_id.clone(), *why)).collect()
    }

    #[test]
    fn scale_in_drains_on_demand_first_then_the_newest() {
        use CapacityType::{OnDemand, Spot};
        use WorkerState::Running;
        let workers = vec![
            worker("spot-old", "us-east-1", Spot, Running, 0),
            worker("od-old", "us-east-1", OnDemand, Running, 1),
            worker("spot-new", "us-east-1", Spot, Running, 5),
            worker("od-new", "us-east-1", OnDemand, Running, 6),
        ];
        let victims = surplus(&workers, "us-east-1", 1);
        assert_eq!(
            ids(&victims),
            vec![
                ("od-new".into(), DrainReason::ScaleIn),
                ("od-old".into(), DrainReason::ScaleIn),
                ("spot-new".into(), DrainReason::ScaleIn)
            ]
        );
        assert!(surplus(&workers, "us-east-1", 4).is_empty());
    }

    #[test]
    fn workers_elsewhere_go_only_once_the_active_region_serves_the_whole_fleet() {
        use CapacityType::Spot;
        use WorkerState::{Draining, Pending, Running};
        let mut workers = vec![
            worker("west", "us-west-2", Spot, Running, 0),
            worker("east-1", "us-east-1", Spot, Running, 1),
            worker("east-2", "us-east-1", Spot, Pending, 2),
            worker("gone", "us-west-2", Spot, Draining, 0),
        ];
        assert!(surplus(&workers, "us-east-1", 2).is_empty(), "one of the two is still booting");
        workers[2].state = Running;
        assert_eq!(ids(&surplus(&workers, "us-east-1", 2)), vec![("west".into(), DrainReason::OutsideActiveRegion)]);
    }
}
