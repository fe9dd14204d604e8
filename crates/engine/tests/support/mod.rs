//! An in-memory world for the engine's tests: EC2 with a capacity per offering, ECS, the job queue, the ledger (the
//! engine's own [`MemoryLedger`]) and the retry queue as plain data, under a clock the test moves. Everything the
//! engine does is recorded.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gameforge_contract::ControlJob;
use gameforge_engine::journal::Decisions;
use gameforge_engine::memory::MemoryLedger;
use gameforge_engine::ports::{
    Alert, Alerts, Backlog, Backlogs, Clock, Compute, LaunchFailure, LaunchOutcome, LedgerStore, LockOutcome,
    Orchestrator, PortError, Readiness, RetryQueue, SaveOutcome,
};
use gameforge_engine::state::FleetState;
use gameforge_planner::config::RegionStamp;
use gameforge_planner::fleet::{Worker, WorkerState};
use gameforge_planner::ladder::LaunchRequest;
use gameforge_planner::ledger::{Interruption, LedgerView, OfferingBlock, QuotaBlock};
use gameforge_planner::scaling::Demand;
use gameforge_planner::{FleetConfig, Offering};

#[derive(Debug, Default)]
pub struct State {
    pub now: DateTime<Utc>,
    pub ledger: MemoryLedger,
    pub workers: Vec<Worker>,
    /// Instances each offering (by key) can still take; an offering not listed has room for any number.
    pub capacity: HashMap<String, u32>,
    /// The error code an offering (by key) answers instead of capacity (a quota, a configuration error).
    pub errors: HashMap<String, String>,
    pub launch_calls: Vec<LaunchRequest>,
    pub drained: Vec<String>,
    pub terminated: Vec<String>,
    pub service_sizes: HashMap<String, u32>,
    /// The CPU tier's service size per region.
    pub cpu_service_sizes: HashMap<String, u32>,
    /// The GPU-only queue.
    pub demand: Option<Demand>,
    /// The any-tier queue.
    pub eligible: Demand,
    pub scheduled: Vec<(ControlJob, Duration)>,
    pub alerts: Vec<Alert>,
    next_id: u32,
}

#[derive(Debug, Default)]
pub struct Memory(Mutex<State>);

impl Memory {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(State { now, ..State::default() }))
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A running worker of the fleet on `offering`.
    pub fn add_worker(&self, offering: &Offering) -> String {
        let mut state = self.state();
        state.next_id += 1;
        let id = format!("i-{:017}", state.next_id);
        let now = state.now;
        state.workers.push(Worker {
            instance_id: id.clone(),
            offering: offering.clone(),
            state: WorkerState::Running,
            launched_at: now,
            draining_since: None,
        });
        id
    }
}

pub fn fleet() -> FleetConfig {
    FleetConfig::from_json(&std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json")).unwrap())
        .unwrap()
}

pub fn at(minutes: i64) -> DateTime<Utc> {
    "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minutes)
}

impl Clock for Memory {
    fn now(&self) -> DateTime<Utc> {
        self.state().now
    }

    fn jitter(&self) -> f64 {
        0.5
    }
}

impl LedgerStore for Memory {
    async fn load_ledger(&self, _fleet: &str) -> Result<(LedgerView, Option<FleetState>), PortError> {
        Ok(self.state().ledger.load())
    }

    async fn put_block(&self, _fleet: &str, block: &OfferingBlock) -> Result<(), PortError> {
        self.state().ledger.put_block(block);
        Ok(())
    }

    async fn put_quota(&self, _fleet: &str, block: &QuotaBlock) -> Result<(), PortError> {
        self.state().ledger.put_quota(block);
        Ok(())
    }

    async fn put_interruptions(&self, _fleet: &str, region: &str, recent: &[Interruption]) -> Result<(), PortError> {
        self.state().ledger.put_interruptions(region, recent);
        Ok(())
    }

    async fn save_state(&self, _fleet: &str, fleet_state: &FleetState) -> Result<SaveOutcome, PortError> {
        Ok(self.state().ledger.save_state(fleet_state))
    }

    async fn lock(
        &self,
        _fleet: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<LockOutcome, PortError> {
        Ok(self.state().ledger.lock(owner, now, lease))
    }

    async fn unlock(&self, _fleet: &str, owner: &str) -> Result<(), PortError> {
        self.state().ledger.unlock(owner);
        Ok(())
    }

    async fn is_done(&self, _fleet: &str, control_id: &str) -> Result<bool, PortError> {
        Ok(self.state().ledger.is_done(control_id))
    }

    async fn mark_done(&self, _fleet: &str, control_id: &str, _now: DateTime<Utc>) -> Result<(), PortError> {
        self.state().ledger.mark_done(control_id);
        Ok(())
    }

    async fn record_decisions(&self, _fleet: &str, decisions: &Decisions) -> Result<(), PortError> {
        self.state().ledger.record_decisions(decisions);
        Ok(())
    }

    async fn recent_decisions(&self, _fleet: &str, limit: usize) -> Result<Vec<Decisions>, PortError> {
        Ok(self.state().ledger.recent_decisions(limit))
    }
}

impl Compute for Memory {
    async fn launch(
        &self,
        request: &LaunchRequest,
        _fleet: &str,
        _client_token: &str,
    ) -> Result<LaunchOutcome, PortError> {
        let mut state = self.state();
        state.launch_calls.push(request.clone());
        let mut outcome = LaunchOutcome::default();
        let mut overrides = request.overrides.clone();
        overrides.sort_by_key(|o| o.priority);
        let mut left = request.count;
        for o in overrides {
            if left == 0 {
                break;
            }
            let offering =
                Offering::new(&request.region, &o.availability_zone, &o.instance_type, request.capacity_type);
            if let Some(code) = state.errors.get(&offering.key()).cloned() {
                outcome.failures.push(LaunchFailure { offering: Some(offering), message: code.clone(), code });
                continue;
            }
            let room = state.capacity.get(&offering.key()).copied().unwrap_or(u32::MAX);
            let take = room.min(left);
            if take == 0 {
                outcome.failures.push(LaunchFailure {
                    offering: Some(offering),
                    code: "InsufficientInstanceCapacity".into(),
                    message: "There is no Spot capacity available that matches your request.".into(),
                });
                continue;
            }
            if let Some(room) = state.capacity.get_mut(&offering.key()) {
                *room -= take;
            }
            for _ in 0..take {
                state.next_id += 1;
                let worker = Worker {
                    instance_id: format!("i-{:017}", state.next_id),
                    offering: offering.clone(),
                    state: WorkerState::Pending,
                    launched_at: state.now,
                    draining_since: None,
                };
                state.workers.push(worker.clone());
                outcome.launched.push(worker);
            }
            left -= take;
        }
        Ok(outcome)
    }

    async fn workers(&self, _fleet: &str, regions: &[String]) -> Result<Vec<Worker>, PortError> {
        Ok(self.state().workers.iter().filter(|w| regions.contains(&w.offering.region)).cloned().collect())
    }

    async fn mark_draining(&self, _region: &str, instance_id: &str, now: DateTime<Utc>) -> Result<(), PortError> {
        let mut state = self.state();
        if let Some(worker) = state.workers.iter_mut().find(|w| w.instance_id == instance_id) {
            worker.state = WorkerState::Draining;
            worker.draining_since = Some(now);
        }
        Ok(())
    }

    async fn terminate(&self, _region: &str, instance_ids: &[String]) -> Result<(), PortError> {
        let mut state = self.state();
        state.workers.retain(|w| !instance_ids.contains(&w.instance_id));
        state.terminated.extend(instance_ids.iter().cloned());
        Ok(())
    }

    async fn placement_scores(
        &self,
        _regions: &[String],
        _instance_types: &[String],
        _target: u32,
    ) -> Result<HashMap<String, u8>, PortError> {
        Err(PortError::new("placement scores", "not answered here"))
    }
}

impl Orchestrator for Memory {
    async fn drain(&self, _stamp: &RegionStamp, instance_id: &str) -> Result<(), PortError> {
        self.state().drained.push(instance_id.to_owned());
        Ok(())
    }

    async fn tasks_running(&self, _stamp: &RegionStamp, _instance_id: &str) -> Result<usize, PortError> {
        Ok(0)
    }

    async fn set_service_size(&self, stamp: &RegionStamp, service: &str, count: u32) -> Result<(), PortError> {
        let mut state = self.state();
        let sizes = if service == stamp.ecs_service { &mut state.service_sizes } else { &mut state.cpu_service_sizes };
        sizes.insert(stamp.region.clone(), count);
        Ok(())
    }

    async fn readiness(&self, _stamp: &RegionStamp) -> Result<Readiness, PortError> {
        Ok(Readiness { cluster: true, task_definition: true, model: true })
    }
}

impl Backlog for Memory {
    async fn demand(&self) -> Result<Backlogs, PortError> {
        let state = self.state();
        Ok(Backlogs { gpu_only: state.demand.unwrap_or_default(), any_tier: state.eligible })
    }
}

impl RetryQueue for Memory {
    async fn schedule(&self, job: &ControlJob, delay: Duration) -> Result<(), PortError> {
        self.state().scheduled.push((job.clone(), delay));
        Ok(())
    }
}

impl Alerts for Memory {
    async fn alert(&self, alert: &Alert) -> Result<(), PortError> {
        self.state().alerts.push(alert.clone());
        Ok(())
    }
}
