//! A simulated AWS under a virtual clock, implementing the executor's ports: EC2 with a capacity model, ECS
//! draining and the CPU tier's Fargate service, the two job queues, the ledger, the retry queue and alerts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gameforge_capacity::CapacityModel;
use gameforge_contract::{CapacityType, ControlJob};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Draining,
    Terminated,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub offering: Offering,
    pub phase: Phase,
    pub launched_at: DateTime<Utc>,
    pub draining_since: Option<DateTime<Utc>>,
    /// EC2 takes a spot instance back at this moment, after its warning.
    pub reclaim_at: Option<DateTime<Utc>>,
    /// The job it is working on: when it finishes.
    pub job_done_at: Option<DateTime<Utc>>,
    /// The queue that job came from, and goes back to if the worker goes away.
    pub job_queue: Queue,
}

/// The two job queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Queue {
    #[default]
    GpuOnly,
    AnyTier,
}

/// A CPU tier worker: a Fargate task of the CPU service.
#[derive(Debug, Clone)]
pub struct CpuWorker {
    pub id: String,
    pub region: String,
    pub started_at: DateTime<Utc>,
    pub serving: bool,
    pub job_done_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub launch_calls: u32,
    pub jobs_completed: u64,
    /// Of `jobs_completed`, those a CPU worker served.
    pub cpu_jobs_completed: u64,
    pub jobs_released: u64,
    pub interruptions: u32,
    pub on_demand_worker_seconds: f64,
    pub worker_seconds: f64,
    /// What the GPU workers cost, at on-demand prices (the fleet file has no spot prices: an upper bound).
    pub gpu_cost: f64,
    pub cpu_worker_seconds: f64,
    pub first_capacity_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct State {
    pub now: DateTime<Utc>,
    pub start: DateTime<Utc>,
    rng: u64,
    pub capacity: CapacityModel,
    pub instances: BTreeMap<String, Instance>,
    next_id: u64,
    ledger: MemoryLedger,
    pub service_sizes: HashMap<String, u32>,
    pub cpu_service_sizes: HashMap<String, u32>,
    pub cpu_workers: BTreeMap<String, CpuWorker>,
    next_cpu_id: u64,
    pub retries: Vec<(DateTime<Utc>, ControlJob)>,
    pub alerts: Vec<Alert>,
    /// The GPU-only queue.
    pub queued: u64,
    /// The any-tier queue.
    pub queued_any: u64,
    pub counters: Counters,
    pub not_ready: HashSet<String>,
    pub placement_scores: Option<HashMap<String, u8>>,
}

#[derive(Debug)]
pub struct SimWorld {
    config: FleetConfig,
    state: Mutex<State>,
}

impl SimWorld {
    pub fn new(config: FleetConfig, start: DateTime<Utc>, capacity: CapacityModel, seed: u64) -> Self {
        let state = State {
            now: start,
            start,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            capacity,
            instances: BTreeMap::new(),
            next_id: 1,
            ledger: MemoryLedger::default(),
            service_sizes: HashMap::new(),
            cpu_service_sizes: HashMap::new(),
            cpu_workers: BTreeMap::new(),
            next_cpu_id: 1,
            retries: Vec::new(),
            alerts: Vec::new(),
            queued: 0,
            queued_any: 0,
            counters: Counters::default(),
            not_ready: HashSet::new(),
            placement_scores: None,
        };
        Self { config, state: Mutex::new(state) }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }
}

impl State {
    pub fn elapsed(&self) -> Duration {
        (self.now - self.start).to_std().unwrap_or_default()
    }

    /// Instances that occupy capacity on `offering`.
    pub fn occupying(&self, offering: &Offering) -> u32 {
        self.instances.values().filter(|i| i.phase != Phase::Terminated && i.offering == *offering).count() as u32
    }

    fn next_random(&mut self) -> f64 {
        // xorshift64*: deterministic per seed, good enough for jitter.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let value = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The executor's fleet state as last saved.
    pub fn fleet_state(&self) -> Option<&FleetState> {
        self.ledger.fleet_state.as_ref()
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight_from(Queue::GpuOnly) + self.in_flight_from(Queue::AnyTier)
    }

    /// Jobs of `queue` being worked on, by GPU and CPU workers.
    pub fn in_flight_from(&self, queue: Queue) -> u64 {
        let gpu = self.instances.values().filter(|i| i.job_done_at.is_some() && i.job_queue == queue).count();
        let cpu = match queue {
            Queue::GpuOnly => 0,
            Queue::AnyTier => self.cpu_workers.values().filter(|w| w.job_done_at.is_some()).count(),
        };
        (gpu + cpu) as u64
    }

    pub fn enqueue(&mut self, queue: Queue, jobs: u64) {
        let depth = match queue {
            Queue::GpuOnly => &mut self.queued,
            Queue::AnyTier => &mut self.queued_any,
        };
        *depth = depth.saturating_add(jobs);
    }

    /// Brings the CPU workers of each region to its service's size: new tasks boot; surplus ones stop, idle
    /// ones first, and a busy one gives its job back to the any-tier queue. Answers the tasks started and stopped.
    pub fn converge_cpu_workers(&mut self) -> (Vec<String>, Vec<String>) {
        let mut started = Vec::new();
        let mut stopped = Vec::new();
        let sizes: Vec<(String, u32)> = self.cpu_service_sizes.iter().map(|(r, n)| (r.clone(), *n)).collect();
        for (region, size) in sizes {
            let mut here: Vec<CpuWorker> = self.cpu_workers.values().filter(|w| w.region == region).cloned().collect();
            while (here.len() as u32) < size {
                let id = format!("cpu-{:05}", self.next_cpu_id);
                self.next_cpu_id += 1;
                let worker = CpuWorker {
                    id: id.clone(),
                    region: region.clone(),
                    started_at: self.now,
                    serving: false,
                    job_done_at: None,
                };
                self.cpu_workers.insert(id.clone(), worker.clone());
                here.push(worker);
                started.push(id);
            }
            // Busy and oldest kept: the idle and the newest stop first.
            here.sort_by_key(|w| (w.job_done_at.is_none(), w.started_at, w.id.clone()));
            for worker in here.iter().skip(size as usize) {
                if self.cpu_workers.remove(&worker.id).is_some_and(|w| w.job_done_at.is_some()) {
                    self.queued_any += 1;
                    self.counters.jobs_released += 1;
                }
                stopped.push(worker.id.clone());
            }
        }
        (started, stopped)
    }
}

impl Clock for SimWorld {
    fn now(&self) -> DateTime<Utc> {
        self.state().now
    }

    fn jitter(&self) -> f64 {
        self.state().next_random()
    }
}

impl LedgerStore for SimWorld {
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

/// EC2's shortage message for an offering, as the real API words it.
fn shortage_message(offering: &Offering) -> String {
    match offering.capacity_type {
        CapacityType::Spot => "There is no Spot capacity available that matches your request.".into(),
        CapacityType::OnDemand => format!(
            "We currently do not have sufficient {} capacity in the Availability Zone you requested ({}). Our system \
             will be working on provisioning additional capacity.",
            offering.instance_type, offering.availability_zone
        ),
    }
}

impl Compute for SimWorld {
    async fn launch(
        &self,
        request: &LaunchRequest,
        _fleet: &str,
        _client_token: &str,
    ) -> Result<LaunchOutcome, PortError> {
        let mut state = self.state();
        state.counters.launch_calls += 1;
        let mut outcome = LaunchOutcome::default();
        let mut remaining = request.count;
        let elapsed = state.elapsed();
        let pools: Vec<(Offering, u32)> = request
            .overrides
            .iter()
            .map(|o| {
                (
                    Offering::new(&request.region, &o.availability_zone, &o.instance_type, request.capacity_type),
                    o.priority,
                )
            })
            .collect();
        let order = state.capacity.fill_order(&pools, |o| state.occupying(o), elapsed);
        for index in order {
            if remaining == 0 {
                break;
            }
            let offering = pools[index].0.clone();
            if let Some(code) = state.capacity.launch_error(&offering, elapsed) {
                outcome.failures.push(LaunchFailure {
                    message: format!("{code} for {} in {}", offering.instance_type, offering.availability_zone),
                    code: code.to_owned(),
                    offering: Some(offering),
                });
                continue;
            }
            let room = match state.capacity.limit(&offering, elapsed) {
                None => remaining,
                Some(limit) => limit.saturating_sub(state.occupying(&offering)).min(remaining),
            };
            if room == 0 {
                outcome.failures.push(LaunchFailure {
                    message: shortage_message(&offering),
                    offering: Some(offering),
                    code: "InsufficientInstanceCapacity".into(),
                });
                continue;
            }
            for _ in 0..room {
                let id = format!("i-{:017x}", state.next_id);
                state.next_id += 1;
                let now = state.now;
                state.instances.insert(
                    id.clone(),
                    Instance {
                        id: id.clone(),
                        offering: offering.clone(),
                        phase: Phase::Pending,
                        launched_at: now,
                        draining_since: None,
                        reclaim_at: None,
                        job_done_at: None,
                        job_queue: Queue::GpuOnly,
                    },
                );
                outcome.launched.push(Worker {
                    instance_id: id,
                    offering: offering.clone(),
                    state: WorkerState::Pending,
                    launched_at: now,
                    draining_since: None,
                });
            }
            remaining -= room;
        }
        Ok(outcome)
    }

    async fn workers(&self, _fleet: &str, regions: &[String]) -> Result<Vec<Worker>, PortError> {
        let state = self.state();
        Ok(state
            .instances
            .values()
            .filter(|i| i.phase != Phase::Terminated && regions.contains(&i.offering.region))
            .map(|i| Worker {
                instance_id: i.id.clone(),
                offering: i.offering.clone(),
                state: match i.phase {
                    Phase::Pending => WorkerState::Pending,
                    Phase::Running => WorkerState::Running,
                    _ => WorkerState::Draining,
                },
                launched_at: i.launched_at,
                draining_since: i.draining_since,
            })
            .collect())
    }

    async fn mark_draining(&self, _region: &str, instance_id: &str, now: DateTime<Utc>) -> Result<(), PortError> {
        let mut state = self.state();
        if let Some(instance) = state.instances.get_mut(instance_id)
            && instance.phase != Phase::Terminated
        {
            instance.phase = Phase::Draining;
            instance.draining_since.get_or_insert(now);
        }
        Ok(())
    }

    async fn terminate(&self, _region: &str, instance_ids: &[String]) -> Result<(), PortError> {
        let mut state = self.state();
        for id in instance_ids {
            release_job(&mut state, id);
            if let Some(instance) = state.instances.get_mut(id) {
                instance.phase = Phase::Terminated;
            }
        }
        Ok(())
    }

    async fn placement_scores(
        &self,
        regions: &[String],
        _instance_types: &[String],
        _target: u32,
    ) -> Result<HashMap<String, u8>, PortError> {
        let state = self.state();
        let scores =
            state.placement_scores.as_ref().ok_or_else(|| PortError::new("placement scores", "not available"))?;
        Ok(scores.iter().filter(|(r, _)| regions.contains(r)).map(|(r, s)| (r.clone(), *s)).collect())
    }
}

/// A worker that goes away mid-job gives its job back to the queue: nothing is lost.
pub(crate) fn release_job(state: &mut State, instance_id: &str) {
    if let Some(instance) = state.instances.get_mut(instance_id)
        && instance.job_done_at.take().is_some()
    {
        let queue = instance.job_queue;
        state.enqueue(queue, 1);
        state.counters.jobs_released += 1;
    }
}

impl Orchestrator for SimWorld {
    async fn drain(&self, _stamp: &RegionStamp, instance_id: &str) -> Result<(), PortError> {
        let mut state = self.state();
        let now = state.now;
        if let Some(instance) = state.instances.get_mut(instance_id)
            && instance.phase != Phase::Terminated
        {
            instance.phase = Phase::Draining;
            instance.draining_since.get_or_insert(now);
        }
        Ok(())
    }

    async fn tasks_running(&self, _stamp: &RegionStamp, instance_id: &str) -> Result<usize, PortError> {
        let state = self.state();
        Ok(state.instances.get(instance_id).map_or(0, |i| usize::from(i.job_done_at.is_some())))
    }

    async fn set_service_size(&self, stamp: &RegionStamp, service: &str, count: u32) -> Result<(), PortError> {
        let mut state = self.state();
        let sizes = if service == stamp.ecs_service { &mut state.service_sizes } else { &mut state.cpu_service_sizes };
        sizes.insert(stamp.region.clone(), count);
        Ok(())
    }

    async fn readiness(&self, stamp: &RegionStamp) -> Result<Readiness, PortError> {
        let ready = !self.state().not_ready.contains(&stamp.region);
        Ok(Readiness { cluster: ready, task_definition: ready, model: ready })
    }
}

impl Backlog for SimWorld {
    async fn demand(&self) -> Result<Backlogs, PortError> {
        let state = self.state();
        Ok(Backlogs {
            gpu_only: Demand { queued: state.queued, in_flight: state.in_flight_from(Queue::GpuOnly) },
            any_tier: Demand { queued: state.queued_any, in_flight: state.in_flight_from(Queue::AnyTier) },
        })
    }
}

impl RetryQueue for SimWorld {
    async fn schedule(&self, job: &ControlJob, delay: Duration) -> Result<(), PortError> {
        let mut state = self.state();
        let at = state.now + chrono::Duration::from_std(delay).unwrap_or_default();
        state.retries.push((at, job.clone()));
        Ok(())
    }
}

impl Alerts for SimWorld {
    async fn alert(&self, alert: &Alert) -> Result<(), PortError> {
        self.state().alerts.push(alert.clone());
        Ok(())
    }
}
