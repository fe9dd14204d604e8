//! `gameforge simulate`: the executor's own decisions (the same [`gameforge_engine::Executor`], not a copy) against a
//! simulated AWS under a virtual clock. Every minute a reconcile job arrives, as the schedule sends it in a
//! deployment; acquisition retries arrive when their backoff says; events (files from `events/`, or spot
//! interruptions of the fleet's own workers) go through the same classifier as the `on-signal` function.
//!
//! The run prints one JSON line per decision and action, and a summary at the end.

pub mod scenario;
pub mod world;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gameforge_capacity::CapacityModel;
use gameforge_contract::{CONTRACT_VERSION, CapacityType, ControlCommand, ControlJob, GenerationJob, S3Uri, Tier};
use gameforge_engine::engine::Handled;
use gameforge_engine::journal::Event;
use gameforge_engine::{Executor, ports::Clock};
use gameforge_planner::cpu_tier::{Route, route};
use serde::Serialize;
use serde_json::{Value, json};

use crate::scenario::Loaded;
use crate::world::{Phase, Queue, SimWorld, State, release_job};

pub use scenario::{ScenarioError, load};

/// The last line of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Workers (pending or running) per region at the end.
    pub workers_by_region: BTreeMap<String, u32>,
    /// From the start to the first worker serving.
    pub time_to_first_capacity_s: Option<f64>,
    pub launch_calls: u32,
    /// On-demand share of the worker-time the fleet ran.
    pub on_demand_share: f64,
    pub migrations: u32,
    /// Where the fleet is placed at the end.
    pub final_region: String,
    pub interruptions: u32,
    pub alerts: u32,
    pub jobs_completed: u64,
    pub jobs_pending: u64,
    /// Jobs handed back to the queue by a worker that went away mid-job (never lost).
    pub jobs_released: u64,
    /// Of `jobs_pending`, those only a GPU may serve.
    pub jobs_pending_gpu_only: u64,
    /// Jobs served, worker-hours and cost by tier (GPU at on-demand prices: the fleet file has no spot prices, so
    /// the GPU figure is an upper bound).
    pub tiers: BTreeMap<Tier, TierFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierFigures {
    pub jobs_completed: u64,
    pub worker_hours: f64,
    pub cost: f64,
    pub cost_per_image: Option<f64>,
}

impl TierFigures {
    fn new(jobs_completed: u64, worker_seconds: f64, cost: f64) -> Self {
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        Self {
            jobs_completed,
            worker_hours: round(worker_seconds / 3600.0, 3),
            cost: round(cost, 2),
            cost_per_image: (jobs_completed > 0).then(|| round(cost / jobs_completed as f64, 4)),
        }
    }
}

/// The CPU tier's tasks: started and stopped as its service says, serving after their boot, each taking the
/// next any-tier job at the tier's measured pace.
fn advance_cpu_workers(loaded: &Loaded, state: &mut State, lines: &mut Vec<Value>) {
    let Some(tier) = &loaded.fleet.cpu_tier else { return };
    let now = state.now;
    let (started, stopped) = state.converge_cpu_workers();
    lines.extend(started.into_iter().map(|id| json!({"event": "cpu_worker_started", "task": id})));
    lines.extend(stopped.into_iter().map(|id| json!({"event": "cpu_worker_stopped", "task": id})));
    // The queue holds counts, not shapes: every any-tier job takes as long as the largest shape routed there.
    let mut shapes = vec![full_size_job()];
    shapes.extend(loaded.scenario.jobs.as_ref().and_then(|j| j.small.as_ref()).map(|s| s.job()));
    let per_job = shapes
        .iter()
        .filter(|job| route(Some(tier), job, now) == Route::AnyTier)
        .map(|job| tier.pace.estimate(job))
        .max()
        .unwrap_or_default()
        .as_chrono();
    let boot = loaded.scenario.cpu_boot_time.as_chrono();
    for worker in state.cpu_workers.values_mut() {
        if !worker.serving && now >= worker.started_at + boot {
            worker.serving = true;
            lines.push(json!({"event": "cpu_worker_serving", "task": worker.id, "region": worker.region}));
        }
        if worker.serving && worker.job_done_at.is_none() && state.queued_any > 0 {
            state.queued_any -= 1;
            worker.job_done_at = Some(now + per_job);
        }
    }
}

/// The job a game backend submits with the contract's defaults: SDXL base at 1024², 30 guided steps.
fn full_size_job() -> GenerationJob {
    let output = S3Uri::parse("s3://gameforge-simulated-images/out/").expect("a valid S3 URI");
    GenerationJob::new("full", "a castle at dusk", "sdxl", output)
}

const START: &str = "2026-01-01T00:00:00Z";

/// Plays a loaded scenario; `emit` receives each JSON line, the summary last.
pub fn run(loaded: &Loaded, mut emit: impl FnMut(&Value)) -> Summary {
    let runtime =
        tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime always builds");
    runtime.block_on(play(loaded, &mut emit))
}

async fn play(loaded: &Loaded, emit: &mut impl FnMut(&Value)) -> Summary {
    let scenario = &loaded.scenario;
    let start: DateTime<Utc> = START.parse().expect("a valid start");
    let world =
        SimWorld::new(loaded.fleet.clone(), start, CapacityModel::new(scenario.capacity.clone()), scenario.seed);
    {
        let mut state = world.state();
        state.not_ready = scenario.stamps.iter().filter(|(_, s)| !s.ready).map(|(r, _)| r.clone()).collect();
        state.placement_scores = scenario.placement_scores.clone();
    }
    let executor = Executor::new(loaded.fleet.clone(), world, "simulator");
    let end = start + scenario.duration.as_chrono();
    let step = scenario.step.as_chrono();
    let mut sim = Sim {
        executor: &executor,
        start,
        emit,
        migrations: 0,
        reconciles: 0,
        jobs_carry: 0.0,
        small_carry: 0.0,
        any_tier_first: false,
        interrupts: 0,
    };
    let mut next_reconcile = start;
    let mut pending_events: Vec<(DateTime<Utc>, usize)> =
        scenario.events.iter().enumerate().map(|(i, e)| (start + e.at.as_chrono(), i)).collect();
    pending_events.sort();

    let mut now = start;
    while now <= end {
        executor.world().state().now = now;
        sim.advance_world(loaded, step).await;
        while let Some(&(at, index)) = pending_events.first() {
            if at > now {
                break;
            }
            pending_events.remove(0);
            sim.scenario_event(loaded, index).await;
        }
        let due: Vec<ControlJob> = {
            let mut state = executor.world().state();
            let (due, later): (Vec<_>, Vec<_>) = state.retries.drain(..).partition(|(at, _)| *at <= now);
            state.retries = later;
            due.into_iter().map(|(_, job)| job).collect()
        };
        for job in due {
            sim.handle(&job).await;
        }
        if now >= next_reconcile {
            sim.reconciles += 1;
            let job = control_job(
                &loaded.fleet.fleet,
                format!("reconcile-{}", sim.reconciles),
                now,
                ControlCommand::Reconcile,
            );
            sim.handle(&job).await;
            next_reconcile += chrono::Duration::minutes(1);
        }
        now += step;
    }
    let summary = sim.summary();
    (sim.emit)(&json!({ "summary": summary }));
    summary
}

fn control_job(fleet: &str, control_id: String, now: DateTime<Utc>, command: ControlCommand) -> ControlJob {
    ControlJob { version: CONTRACT_VERSION, control_id, fleet: fleet.to_owned(), emitted_at: now, command }
}

struct Sim<'a, E> {
    executor: &'a Executor<SimWorld>,
    start: DateTime<Utc>,
    emit: &'a mut E,
    migrations: u32,
    reconciles: u64,
    jobs_carry: f64,
    small_carry: f64,
    /// Which queue the next GPU worker tries first.
    any_tier_first: bool,
    interrupts: u64,
}

impl<E: FnMut(&Value)> Sim<'_, E> {
    fn line(&mut self, source: &str, mut body: Value) {
        let now = self.executor.world().now();
        if let Value::Object(map) = &mut body {
            map.insert("t".into(), json!((now - self.start).num_seconds()));
            map.insert("source".into(), json!(source));
        }
        (self.emit)(&body);
    }

    async fn handle(&mut self, job: &ControlJob) {
        match self.executor.handle(job).await {
            Ok(Handled::Done(journal)) => {
                for entry in journal.entries {
                    if matches!(entry.event, Event::Migrate { .. }) {
                        self.migrations += 1;
                    }
                    // Every minute's reconcile starts with the same two lines; keep the ones that say something.
                    if matches!(entry.event, Event::Job { .. } | Event::Satisfied { .. } | Event::ServiceSize { .. }) {
                        continue;
                    }
                    let value = serde_json::to_value(&entry).unwrap_or(Value::Null);
                    self.line("executor", value);
                }
            }
            Ok(other) => self.line(
                "executor",
                json!({"event": "skipped_job", "control_id": job.control_id, "why": format!("{other:?}")}),
            ),
            Err(error) => self.line(
                "executor",
                json!({"event": "job_failed", "control_id": job.control_id, "error": error.to_string()}),
            ),
        }
    }

    /// One tick of the world: boots, reclaims, capacity squeezes, and the job queue.
    async fn advance_world(&mut self, loaded: &Loaded, step: chrono::Duration) {
        let boot = loaded.scenario.boot_time.as_chrono();
        let mut lines = Vec::new();
        let squeeze;
        {
            let mut state = self.executor.world().state();
            let now = state.now;
            let elapsed = state.elapsed();
            let ids: Vec<String> = state.instances.keys().cloned().collect();
            for id in &ids {
                let instance = state.instances[id].clone();
                if instance.phase == Phase::Pending && now >= instance.launched_at + boot {
                    if let Some(i) = state.instances.get_mut(id) {
                        i.phase = Phase::Running;
                    }
                    state.counters.first_capacity_at.get_or_insert(now);
                    lines.push(
                        json!({"event": "worker_serving", "instance_id": id, "offering": instance.offering.key()}),
                    );
                }
                if instance.phase != Phase::Terminated && instance.reclaim_at.is_some_and(|at| now >= at) {
                    release_job(&mut state, id);
                    if let Some(i) = state.instances.get_mut(id) {
                        i.phase = Phase::Terminated;
                    }
                    lines.push(json!({"event": "spot_reclaimed", "instance_id": id}));
                }
            }
            // Spot capacity that shrinks below what runs takes instances back, newest first, with a warning.
            let mut over: Vec<String> = Vec::new();
            let mut seen: Vec<_> = Vec::new();
            for instance in state.instances.values() {
                let offering = &instance.offering;
                if offering.capacity_type != CapacityType::Spot || seen.contains(offering) {
                    continue;
                }
                seen.push(offering.clone());
                let Some(limit) = state.capacity.reclaim_limit(offering, elapsed) else { continue };
                let mut live: Vec<&world::Instance> = state
                    .instances
                    .values()
                    .filter(|i| i.offering == *offering && i.phase != Phase::Terminated && i.reclaim_at.is_none())
                    .collect();
                live.sort_by_key(|i| std::cmp::Reverse(i.launched_at));
                let excess = (live.len() as u32).saturating_sub(limit) as usize;
                over.extend(live.into_iter().take(excess).map(|i| i.id.clone()));
            }
            squeeze = over;

            // Jobs: arrivals, each routed as submission routes it, completions, and idle serving workers taking
            // the next one.
            if let Some(jobs) = &loaded.scenario.jobs {
                let from = self.start + jobs.from.as_chrono();
                let until = jobs.until.map(|u| self.start + u.as_chrono());
                if now >= from && until.is_none_or(|u| now < u) {
                    self.jobs_carry += jobs.per_minute * step.num_milliseconds() as f64 / 60_000.0;
                    let arrived = self.jobs_carry.floor();
                    self.jobs_carry -= arrived;
                    let small = jobs.small.as_ref().map_or(0.0, |small| {
                        self.small_carry += arrived * small.share;
                        let small = self.small_carry.floor();
                        self.small_carry -= small;
                        small
                    });
                    let full = arrived - small;
                    let tier = loaded.fleet.cpu_tier.as_ref();
                    let queue = |job: &GenerationJob| match route(tier, job, now) {
                        Route::AnyTier => Queue::AnyTier,
                        Route::GpuOnly(_) => Queue::GpuOnly,
                    };
                    if let Some(shape) = &jobs.small {
                        state.enqueue(queue(&shape.job()), small as u64);
                    }
                    state.enqueue(queue(&full_size_job()), full as u64);
                }
            }
            let mut completed = 0;
            for instance in state.instances.values_mut() {
                if instance.job_done_at.is_some_and(|at| now >= at) {
                    instance.job_done_at = None;
                    completed += 1;
                }
            }
            let mut cpu_completed = 0;
            for worker in state.cpu_workers.values_mut() {
                if worker.job_done_at.is_some_and(|at| now >= at) {
                    worker.job_done_at = None;
                    cpu_completed += 1;
                }
            }
            state.counters.jobs_completed += completed + cpu_completed;
            state.counters.cpu_jobs_completed += cpu_completed;
            advance_cpu_workers(loaded, &mut state, &mut lines);
            let rates: Vec<(String, f64)> = state
                .instances
                .values()
                .filter(|i| i.phase == Phase::Running && i.reclaim_at.is_none() && i.job_done_at.is_none())
                .map(|i| {
                    (
                        i.id.clone(),
                        loaded.fleet.instance_type(&i.offering.instance_type).map_or(60.0, |t| t.jobs_per_hour),
                    )
                })
                .collect();
            for (id, per_hour) in rates {
                // A GPU worker takes from both queues in turn, so that neither waits behind the other.
                self.any_tier_first = !self.any_tier_first;
                let order = if self.any_tier_first {
                    [Queue::AnyTier, Queue::GpuOnly]
                } else {
                    [Queue::GpuOnly, Queue::AnyTier]
                };
                let Some(queue) = order.into_iter().find(|q| match q {
                    Queue::GpuOnly => state.queued > 0,
                    Queue::AnyTier => state.queued_any > 0,
                }) else {
                    break;
                };
                match queue {
                    Queue::GpuOnly => state.queued -= 1,
                    Queue::AnyTier => state.queued_any -= 1,
                }
                let seconds = (3600.0 / per_hour.max(0.001)) as i64;
                if let Some(i) = state.instances.get_mut(&id) {
                    i.job_done_at = Some(now + chrono::Duration::seconds(seconds));
                    i.job_queue = queue;
                }
            }
            let serving: Vec<(bool, f64)> = state
                .instances
                .values()
                .filter(|i| matches!(i.phase, Phase::Running | Phase::Draining))
                .map(|i| {
                    let price = loaded
                        .fleet
                        .instance_type(&i.offering.instance_type)
                        .map_or(0.0, |t| t.on_demand_price_per_hour);
                    (i.offering.capacity_type == CapacityType::OnDemand, price)
                })
                .collect();
            let seconds = step.num_milliseconds() as f64 / 1000.0;
            state.counters.worker_seconds += serving.len() as f64 * seconds;
            state.counters.on_demand_worker_seconds += serving.iter().filter(|(od, _)| *od).count() as f64 * seconds;
            state.counters.gpu_cost += serving.iter().map(|(_, price)| price * seconds / 3600.0).sum::<f64>();
            // Fargate bills from the task's start.
            state.counters.cpu_worker_seconds += state.cpu_workers.len() as f64 * seconds;
        }
        for line in lines {
            self.line("sim", line);
        }
        if !squeeze.is_empty() {
            self.interrupt(squeeze).await;
        }
    }

    async fn scenario_event(&mut self, loaded: &Loaded, index: usize) {
        let event = &loaded.scenario.events[index];
        if let Some(bytes) = loaded.event_files.get(&index) {
            self.deliver(bytes.clone()).await;
        } else if let Some(interrupt) = &event.interrupt {
            let victims: Vec<String> = {
                let state = self.executor.world().state();
                let mut spot: Vec<&world::Instance> = state
                    .instances
                    .values()
                    .filter(|i| {
                        i.offering.region == interrupt.region
                            && interrupt.zone.as_ref().is_none_or(|zone| *zone == i.offering.availability_zone)
                            && i.offering.capacity_type == CapacityType::Spot
                            && matches!(i.phase, Phase::Running | Phase::Pending)
                            && i.reclaim_at.is_none()
                    })
                    .collect();
                spot.sort_by_key(|i| i.launched_at);
                spot.into_iter().take(interrupt.count as usize).map(|i| i.id.clone()).collect()
            };
            self.interrupt(victims).await;
        }
    }

    /// Spot warnings for these instances, two minutes before EC2 takes them back.
    async fn interrupt(&mut self, instance_ids: Vec<String>) {
        for id in instance_ids {
            let (region, now) = {
                let mut state = self.executor.world().state();
                let now = state.now;
                state.counters.interruptions += 1;
                let Some(instance) = state.instances.get_mut(&id) else { continue };
                instance.reclaim_at = Some(now + chrono::Duration::minutes(2));
                (instance.offering.region.clone(), now)
            };
            self.interrupts += 1;
            let event = json!({
                "version": "0",
                "id": format!("sim-spot-{}", self.interrupts),
                "detail-type": "EC2 Spot Instance Interruption Warning",
                "source": "aws.ec2",
                "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "region": region,
                "resources": [],
                "detail": {"instance-id": id, "instance-action": "terminate"},
            });
            self.deliver(event.to_string().into_bytes()).await;
        }
    }

    /// An EventBridge event through the classifier, as `on-signal` would turn it into control jobs.
    async fn deliver(&mut self, bytes: Vec<u8>) {
        let signal = match gameforge_signals::classify_json(&bytes) {
            Ok(signal) => signal,
            Err(error) => {
                self.line("sim", json!({"event": "not_an_event", "error": error.to_string()}));
                return;
            }
        };
        self.line("sim", json!({"event": "eventbridge", "signal": signal}));
        let now = self.executor.world().now();
        for job in gameforge_signals::control_jobs(&signal, &self.executor.config().fleet, now) {
            self.handle(&job).await;
        }
    }

    fn summary(&self) -> Summary {
        let state = self.executor.world().state();
        let mut workers_by_region = BTreeMap::new();
        for instance in state.instances.values().filter(|i| matches!(i.phase, Phase::Pending | Phase::Running)) {
            *workers_by_region.entry(instance.offering.region.clone()).or_insert(0) += 1;
        }
        let final_region = state
            .fleet_state()
            .map(|s| s.placement.active_region.clone())
            .unwrap_or_else(|| self.executor.config().home_region.clone());
        let counters = &state.counters;
        Summary {
            workers_by_region,
            time_to_first_capacity_s: counters.first_capacity_at.map(|at| (at - self.start).num_seconds() as f64),
            launch_calls: counters.launch_calls,
            on_demand_share: if counters.worker_seconds > 0.0 {
                (counters.on_demand_worker_seconds / counters.worker_seconds * 1000.0).round() / 1000.0
            } else {
                0.0
            },
            migrations: self.migrations,
            final_region,
            interruptions: counters.interruptions,
            alerts: state.alerts.len() as u32,
            jobs_completed: counters.jobs_completed,
            jobs_pending: state.queued + state.queued_any + state.in_flight(),
            jobs_released: counters.jobs_released,
            jobs_pending_gpu_only: state.queued + state.in_flight_from(Queue::GpuOnly),
            tiers: self.tier_figures(&state),
        }
    }

    fn tier_figures(&self, state: &State) -> BTreeMap<Tier, TierFigures> {
        let counters = &state.counters;
        let mut tiers = BTreeMap::new();
        let gpu_jobs = counters.jobs_completed - counters.cpu_jobs_completed;
        tiers.insert(Tier::Gpu, TierFigures::new(gpu_jobs, counters.worker_seconds, counters.gpu_cost));
        if let Some(tier) = &self.executor.config().cpu_tier {
            let cost = counters.cpu_worker_seconds / 3600.0 * tier.price_per_hour;
            tiers.insert(Tier::Cpu, TierFigures::new(counters.cpu_jobs_completed, counters.cpu_worker_seconds, cost));
        }
        tiers
    }
}
