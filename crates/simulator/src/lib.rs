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
use gameforge_contract::{CONTRACT_VERSION, CapacityType, ControlCommand, ControlJob};
use gameforge_engine::engine::Handled;
use gameforge_engine::journal::Event;
use gameforge_engine::{Executor, ports::Clock};
use serde::Serialize;
use serde_json::{Value, json};

use crate::scenario::Loaded;
use crate::world::{Phase, SimWorld, release_job};

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
    let mut sim =
        Sim { executor: &executor, start, emit, migrations: 0, reconciles: 0, jobs_carry: 0.0, interrupts: 0 };
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

            // Jobs: arrivals, completions, and idle serving workers taking the next one.
            if let Some(jobs) = &loaded.scenario.jobs {
                let from = self.start + jobs.from.as_chrono();
                let until = jobs.until.map(|u| self.start + u.as_chrono());
                if now >= from && until.is_none_or(|u| now < u) {
                    self.jobs_carry += jobs.per_minute * step.num_milliseconds() as f64 / 60_000.0;
                    let arrived = self.jobs_carry.floor();
                    self.jobs_carry -= arrived;
                    state.queued = state.queued.saturating_add(arrived as u64);
                }
            }
            let mut completed = 0;
            for instance in state.instances.values_mut() {
                if instance.job_done_at.is_some_and(|at| now >= at) {
                    instance.job_done_at = None;
                    completed += 1;
                }
            }
            state.counters.jobs_completed += completed;
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
                if state.queued == 0 {
                    break;
                }
                state.queued -= 1;
                let seconds = (3600.0 / per_hour.max(0.001)) as i64;
                if let Some(i) = state.instances.get_mut(&id) {
                    i.job_done_at = Some(now + chrono::Duration::seconds(seconds));
                }
            }
            let serving: Vec<bool> = state
                .instances
                .values()
                .filter(|i| matches!(i.phase, Phase::Running | Phase::Draining))
                .map(|i| i.offering.capacity_type == CapacityType::OnDemand)
                .collect();
            let seconds = step.num_milliseconds() as f64 / 1000.0;
            state.counters.worker_seconds += serving.len() as f64 * seconds;
            state.counters.on_demand_worker_seconds += serving.iter().filter(|od| **od).count() as f64 * seconds;
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
            jobs_pending: state.queued + state.in_flight(),
            jobs_released: counters.jobs_released,
        }
    }
}
