//! The executor's logic: one control job in, the fleet converged toward what it should be. It learns from the
//! job (a shortage, an interruption, the backlog), then walks the ladder until the fleet has its desired size or
//! nothing more can be had now: zones and instance types within one launch call, capacity types in order,
//! another region when this one is exhausted. What it could not get is retried after a backoff with full jitter;
//! what is too much is drained, then terminated. The simulator runs this same code against a simulated AWS.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gameforge_aws::backoff::Backoff;
use gameforge_aws::invocation::Deadline;
use gameforge_contract::{
    CONTRACT_VERSION, CapacityShortage, CapacityType, ControlCommand, ControlJob, InterruptionNotice, NoticeKind,
    OperatorAction, ShortageCause,
};
use gameforge_planner::FleetConfig;
use gameforge_planner::Offering;
use gameforge_planner::config::RebalancePolicy;
use gameforge_planner::cpu_tier::{self, TierInputs};
use gameforge_planner::fleet::{DrainReason, Worker, WorkerState, Workers, surplus};
use gameforge_planner::ladder::{LaunchRequest, Skip, next_launch};
use gameforge_planner::launch_errors::{LaunchErrorKind, classify, failed_offerings};
use gameforge_planner::ledger::{BlockCause, LedgerView};
use gameforge_planner::placement::{
    MigrationReason, Target, choose_target, region_exhausted, should_leave, should_return_home, toured_in_vain,
};
use gameforge_planner::scaling::{Demand, desired_workers};

use crate::journal::{Decisions, DrainCause, Event, Journal};
use crate::ports::{Alert, AlertKind, LaunchFailure, LockOutcome, PortError, SaveOutcome, World};
use crate::state::{ConfigError, FleetState, Paused, Pinned, Seen};

/// What became of one control job.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    Done(Journal),
    /// Handled before; nothing was done again.
    Duplicate,
    /// Another executor holds the fleet; retry after `until`.
    Busy {
        until: DateTime<Utc>,
    },
    /// For another fleet.
    NotOurs,
}

#[derive(Debug)]
pub struct Executor<W> {
    config: FleetConfig,
    world: W,
    owner: String,
    /// How long the fleet lock protects a call without a deadline (a direct call, the simulator); under Lambda
    /// the lock lasts as long as the invocation can, so a killed invocation frees it at its timeout.
    pub lock_lease: Duration,
    /// A draining worker is terminated when its task has stopped, or after this long regardless.
    pub drain_timeout: Duration,
}

/// One invocation's view of the fleet.
struct Cx {
    now: DateTime<Utc>,
    view: LedgerView,
    state: FleetState,
    workers: Vec<Worker>,
    journal: Journal,
    readiness: HashMap<String, bool>,
    control_id: String,
    launches: u32,
    /// The backlog, when this invocation read it.
    demand: Option<Demand>,
    /// The any-tier queue, when this invocation read it.
    eligible: Option<Demand>,
}

impl Cx {
    fn note(&mut self, event: Event) {
        self.journal.push(self.now, event);
    }
}

impl<W: World> Executor<W> {
    pub fn new(config: FleetConfig, world: W, owner: impl Into<String>) -> Self {
        Self {
            config,
            world,
            owner: owner.into(),
            lock_lease: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(150),
        }
    }

    pub fn world(&self) -> &W {
        &self.world
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Handles one control job under the fleet's lock, at most once.
    pub async fn handle(&self, job: &ControlJob) -> Result<Handled, PortError> {
        self.handle_until(job, Deadline::NONE).await
    }

    /// [`Executor::handle`] within an invocation that is stopped at `deadline`.
    pub async fn handle_until(&self, job: &ControlJob, deadline: Deadline) -> Result<Handled, PortError> {
        let fleet = &self.config.fleet;
        if job.fleet != *fleet {
            return Ok(Handled::NotOurs);
        }
        if self.world.is_done(fleet, &job.control_id).await? {
            return Ok(Handled::Duplicate);
        }
        let lease = deadline.lease(std::time::SystemTime::now(), self.lock_lease);
        match self.world.lock(fleet, &self.owner, self.world.now(), lease).await? {
            LockOutcome::Acquired => {}
            LockOutcome::HeldElsewhere { until } => return Ok(Handled::Busy { until }),
        }
        let outcome = self.run(job).await;
        if let Err(error) = self.world.unlock(fleet, &self.owner).await {
            tracing::warn!(%error, "could not release the fleet lock; it will lapse");
        }
        let journal = outcome?;
        self.world.mark_done(fleet, &job.control_id, self.world.now()).await?;
        if !journal.is_routine() {
            let decisions = Decisions {
                control_id: job.control_id.clone(),
                command: job.command.kind().into(),
                at: journal.entries.first().map_or_else(|| self.world.now(), |e| e.at),
                entries: journal.entries.clone(),
            };
            // The decisions are done and saved; only the operators' record of them would be missing.
            if let Err(error) = self.world.record_decisions(fleet, &decisions).await {
                tracing::warn!(%error, "could not keep this invocation's decisions for operators");
            }
        }
        Ok(Handled::Done(journal))
    }

    async fn run(&self, job: &ControlJob) -> Result<Journal, PortError> {
        let fleet = &self.config.fleet;
        let now = self.world.now();
        let (view, state) = self.world.load_ledger(fleet).await?;
        let regions: Vec<String> = self.config.regions.iter().map(|r| r.region.clone()).collect();
        let workers = self.world.workers(fleet, &regions).await?;
        let mut cx = Cx {
            now,
            view,
            state: state.unwrap_or_else(|| FleetState::new(&self.config, now)),
            workers,
            journal: Journal::default(),
            readiness: HashMap::new(),
            control_id: job.control_id.clone(),
            launches: 0,
            demand: None,
            eligible: None,
        };
        cx.note(Event::Job { control_id: job.control_id.clone(), command: job.command.kind().into() });

        let force = match &job.command {
            ControlCommand::RecordCapacityFailure { shortage } => {
                self.learn_shortage(&mut cx, shortage).await?;
                false
            }
            ControlCommand::HandleInterruption { notice } => self.learn_interruption(&mut cx, notice).await?,
            ControlCommand::AcquireCapacity { clear_errors, .. } => {
                if *clear_errors {
                    cx.state.config_error = None;
                }
                true
            }
            ControlCommand::Reconcile => {
                self.scale(&mut cx).await?;
                false
            }
            ControlCommand::Migrate { to, .. } => {
                self.requested_migration(&mut cx, to.as_deref()).await?;
                true
            }
            ControlCommand::DrainInstance { instance_id, region } => {
                if cx.workers.iter().any(|w| w.instance_id == *instance_id) {
                    self.drain(&mut cx, instance_id, region, DrainCause::Fleet(DrainReason::Requested)).await?;
                }
                true
            }
            ControlCommand::Operate { by, action } => self.operate(&mut cx, by, action).await?,
        };
        self.converge(&mut cx, force).await?;
        let (demand, demand_at) = match cx.demand {
            Some(demand) => (Some(demand), Some(now)),
            None => cx.state.seen.as_ref().map_or((None, None), |s| (s.demand, s.demand_at)),
        };
        cx.state.seen = Some(Seen { at: now, workers: cx.workers.clone(), demand, demand_at });

        cx.state.version += 1;
        match self.world.save_state(fleet, &cx.state).await? {
            SaveOutcome::Saved => Ok(cx.journal),
            SaveOutcome::Conflict => Err(PortError::new("save fleet state", "another executor saved it first")),
        }
    }

    /// A reported shortage: block what it names. Unknown dimensions widen the block within the fleet's own
    /// offerings (an Auto Scaling spot shortage names a zone, not a type); a report naming nothing but a region
    /// blocks nothing.
    async fn learn_shortage(&self, cx: &mut Cx, shortage: &CapacityShortage) -> Result<(), PortError> {
        if self.config.stamp(&shortage.region).is_none() {
            return Ok(());
        }
        let known = shortage.instance_type.is_some() || shortage.availability_zone.is_some();
        let offerings = self.config.offerings_named(
            &shortage.region,
            shortage.instance_type.as_deref(),
            shortage.availability_zone.as_deref(),
            shortage.capacity_type,
        );
        match shortage.cause {
            ShortageCause::InsufficientCapacity if known => {
                for offering in &offerings {
                    self.block(cx, offering, BlockCause::Shortage).await?;
                }
            }
            ShortageCause::Quota => {
                let code = shortage.error_code.clone().unwrap_or_else(|| "QuotaExceeded".into());
                let mut seen = Vec::new();
                for offering in offerings {
                    let bucket = offering.quota_bucket();
                    if !seen.contains(&bucket) {
                        seen.push(bucket);
                        self.block_quota(cx, &offering, &code).await?;
                    }
                }
            }
            // A placement failure or a shortage without an offering says the fleet is short, nothing more.
            _ => {}
        }
        Ok(())
    }

    /// An interruption of one instance. Returns whether a replacement must be sought now.
    async fn learn_interruption(&self, cx: &mut Cx, notice: &InterruptionNotice) -> Result<bool, PortError> {
        let Some(instance_id) = notice.instance_id.clone() else {
            tracing::warn!(
                event_id = %notice.event_id,
                region = %notice.region,
                notice = ?notice.notice,
                "an interruption notice names no instance; checking the fleet against EC2 instead"
            );
            cx.note(Event::UntiedInterruption {
                event_id: notice.event_id.clone(),
                region: notice.region.clone(),
                notice: notice.notice,
            });
            return Ok(true);
        };
        let worker = cx.workers.iter().find(|w| w.instance_id == instance_id).cloned();
        cx.note(Event::Interruption {
            instance_id: instance_id.clone(),
            // The instance's own region where the fleet knows it: an event forwarded between regions' buses may
            // arrive stamped with the bus's region.
            region: worker.as_ref().map_or_else(|| notice.region.clone(), |w| w.offering.region.clone()),
            notice: notice.notice,
            ours: worker.is_some(),
        });
        // Instances outside the fleet share the account's event bus.
        let Some(worker) = worker else { return Ok(false) };
        let region = worker.offering.region.clone();
        match notice.notice {
            NoticeKind::SpotInterruption | NoticeKind::CapacityReservation => {
                cx.view.apply_interruption(
                    &worker.offering,
                    cx.now,
                    self.config.ledger.interruption_window.as_chrono(),
                );
                let recent = cx.view.interruptions.get(&region).cloned().unwrap_or_default();
                self.world.put_interruptions(&self.config.fleet, &region, &recent).await?;
                if worker.offering.capacity_type == CapacityType::Spot {
                    self.block(cx, &worker.offering, BlockCause::Interrupted).await?;
                }
            }
            NoticeKind::RebalanceRecommendation if self.config.rebalance_policy == RebalancePolicy::Ignore => {
                return Ok(false);
            }
            _ => {}
        }
        if worker.state != WorkerState::Draining {
            self.drain(cx, &instance_id, &region, DrainCause::Notice(notice.notice)).await?;
        }
        Ok(true)
    }

    /// Desired size from the backlog.
    async fn scale(&self, cx: &mut Cx) -> Result<(), PortError> {
        let backlogs = self.world.demand().await?;
        let demand = backlogs.total();
        let current = cx.state.desired;
        cx.demand = Some(demand);
        let decision = desired_workers(&self.config.workers, demand, current, cx.state.scale, cx.now);
        if decision.desired != current {
            cx.note(Event::Scale { demand, current, desired: decision.desired });
        }
        cx.state.desired = decision.desired;
        cx.state.scale = decision.memory;
        cx.eligible = Some(backlogs.any_tier);
        Ok(())
    }

    /// Whether the CPU tier runs, and its size, from the eligible backlog and what the GPU side can do; after the
    /// launches, so that what they learned of GPU capacity counts.
    fn plan_cpu_tier(&self, cx: &mut Cx) {
        let (Some(tier), Some(eligible)) = (&self.config.cpu_tier, cx.eligible) else { return };
        // A pause stops every launch, the tier's included: it keeps the size it had.
        if cx.state.operator.paused.is_some() {
            return;
        }
        let usable: Vec<&str> = match &cx.state.operator.pinned {
            Some(pinned) => vec![pinned.region.as_str()],
            None => self.config.regions.iter().map(|r| r.region.as_str()).collect(),
        };
        let current = cx.state.cpu.desired;
        let inputs = TierInputs {
            gpu_offering_available: !toured_in_vain(&self.config, cx.state.fruitless_migrations)
                && usable.iter().any(|r| !region_exhausted(&self.config, &cx.view, r, cx.now)),
            gpu_workers: cx.workers.iter().filter(|w| w.state == WorkerState::Running).count() as u32,
            eligible,
            current,
        };
        let limits = tier.limits(&self.config.workers);
        let decision = cpu_tier::decide(tier, &limits, inputs, &cx.state.cpu.memory, cx.now);
        if decision.desired != current || decision.entered.is_some() || decision.left.is_some() {
            cx.note(Event::CpuTier {
                current,
                desired: decision.desired,
                eligible,
                entered: decision.entered,
                left: decision.left,
            });
        }
        cx.state.cpu.desired = decision.desired;
        cx.state.cpu.memory = decision.memory;
    }

    /// An operator's instruction. Returns whether launching should be tried now.
    async fn operate(&self, cx: &mut Cx, by: &str, action: &OperatorAction) -> Result<bool, PortError> {
        let mut moving_to = None;
        let mut applied = true;
        let (outcome, force) = match action {
            OperatorAction::Pause { reason } => {
                cx.state.operator.paused = Some(Paused { by: by.to_owned(), reason: reason.clone(), at: cx.now });
                ("launching paused; draining and scaling in go on".to_owned(), false)
            }
            OperatorAction::Resume => {
                let mut words = match cx.state.operator.paused.take() {
                    Some(paused) => format!("launching resumed (paused by {} since {})", paused.by, paused.at),
                    None => "launching resumed (it was not paused)".to_owned(),
                };
                if let Some(error) = cx.state.config_error.take() {
                    words.push_str(&format!("; the stop for {} is lifted", error.code));
                }
                // A resumed fleet tries at once, not after the backoff it was in.
                cx.state.next_attempt_at = None;
                (words, true)
            }
            OperatorAction::Pin { region } if self.config.stamp(region).is_none() => {
                let known: Vec<&str> = self.config.regions.iter().map(|r| r.region.as_str()).collect();
                applied = false;
                (format!("refused: {region} is not one of the fleet's regions ({})", known.join(", ")), false)
            }
            OperatorAction::Pin { region } => {
                cx.state.operator.pinned = Some(Pinned { region: region.clone(), by: by.to_owned(), at: cx.now });
                if *region == cx.state.placement.active_region {
                    (format!("pinned to {region}, where the fleet is"), false)
                } else {
                    moving_to = Some(region.clone());
                    (format!("pinned to {region}; the fleet moves there now"), true)
                }
            }
            OperatorAction::Unpin => match cx.state.operator.pinned.take() {
                Some(pin) => (format!("unpinned from {} (pinned by {} since {})", pin.region, pin.by, pin.at), true),
                None => ("unpinned (it was not pinned)".to_owned(), false),
            },
            OperatorAction::Unblock { pattern } => {
                let (offerings, quotas) = cx.view.matching(pattern, cx.now);
                let offerings: Vec<_> = offerings.into_iter().map(|b| b.lifted(cx.now)).collect();
                let quotas: Vec<_> = quotas.into_iter().map(|q| q.lifted(cx.now)).collect();
                let mut keys: Vec<String> = offerings.iter().map(|b| b.offering.key()).collect();
                keys.extend(quotas.iter().map(|q| format!("quota {}", q.bucket.key())));
                for block in offerings {
                    self.world.put_block(&self.config.fleet, &block).await?;
                    cx.view.apply_block(block);
                }
                for block in quotas {
                    self.world.put_quota(&self.config.fleet, &block).await?;
                    cx.view.apply_quota(block);
                }
                let words = if keys.is_empty() {
                    format!("nothing blocked matches {pattern}")
                } else {
                    format!("unblocked {} matching {pattern}: {}", keys.len(), keys.join(", "))
                };
                (words, !keys.is_empty())
            }
        };
        cx.note(Event::Operator { by: by.to_owned(), action: action.clone(), applied, outcome });
        if let Some(region) = moving_to {
            self.migrate(cx, &region, MigrationReason::Requested);
        }
        Ok(force)
    }

    async fn requested_migration(&self, cx: &mut Cx, to: Option<&str>) -> Result<(), PortError> {
        if let Some(pin) = &cx.state.operator.pinned {
            let region = pin.region.clone();
            cx.note(Event::Pinned { region, declined: MigrationReason::Requested });
            return Ok(());
        }
        let target = match to {
            Some(region) if self.config.stamp(region).is_some() => Some(region.to_owned()),
            Some(_) => None,
            None => self.choose(cx).await?.map(|t| t.region),
        };
        if let Some(target) = target
            && target != cx.state.placement.active_region
        {
            self.migrate(cx, &target, MigrationReason::Requested);
        }
        Ok(())
    }

    async fn converge(&self, cx: &mut Cx, force: bool) -> Result<(), PortError> {
        self.reap(cx).await?;
        let desired = cx.state.desired;
        let launches_allowed = if let Some(paused) = &cx.state.operator.paused {
            let why = format!("launching paused by {} since {}: {}", paused.by, paused.at, paused.reason);
            cx.note(Event::Waiting { until: cx.now, why });
            false
        } else if let Some(error) = &cx.state.config_error {
            let why = format!("launches stopped by {} until an operator clears it", error.code);
            cx.note(Event::Waiting { until: cx.now, why });
            false
        } else if let Some(until) = cx.state.next_attempt_at.filter(|t| !force && *t > cx.now) {
            cx.note(Event::Waiting { until, why: "backoff after a shortfall".into() });
            false
        } else {
            true
        };

        if launches_allowed {
            self.return_home(cx, desired).await?;
            self.fill(cx, desired).await?;
            let here = cx.workers.active_in(&cx.state.placement.active_region) as u32;
            if here >= desired {
                cx.state.acquire_round = 0;
                cx.state.next_attempt_at = None;
            } else if cx.state.config_error.is_none() {
                self.schedule_retry(cx).await?;
            }
        }
        self.shrink(cx).await?;
        self.plan_cpu_tier(cx);
        self.size_services(cx).await
    }

    /// Away from home past the hysteresis window, with home able to host the whole fleet as far as the ledger and
    /// the guardrails know: try home first. The fleet moves back only when home gave it all it needs, so that it
    /// never moves back to leave again; workers a short probe launched are drained like any surplus.
    async fn return_home(&self, cx: &mut Cx, desired: u32) -> Result<(), PortError> {
        let home = self.config.home_region.clone();
        if desired == 0
            || cx.state.operator.pinned.is_some()
            || !should_return_home(&self.config, &cx.view, &cx.state.placement, cx.now)
            || !self.hostable(cx, &home, desired)
        {
            return Ok(());
        }
        cx.note(Event::ReturnHomeProbe { home: home.clone() });
        // The preferred capacity type must answer before anything else is spent on the probe.
        let first = next_launch(&self.config, &cx.view, &cx.workers, &home, desired, &[], cx.now);
        let Some(request) = first.request else { return Ok(()) };
        let mut got = self.launch(cx, &request).await?;
        if got == 0 || cx.state.config_error.is_some() {
            return Ok(());
        }
        if got < desired {
            got += self.acquire_in_after(cx, &home, desired - got, vec![request.capacity_type]).await?;
        }
        if got >= desired {
            self.migrate(cx, &home, MigrationReason::ReturnHome);
        }
        Ok(())
    }

    /// Whether `region` could take `need` workers if every offering out of the ledger had room: one call of the
    /// preferred capacity type takes them all, or on-demand within its guardrails does.
    fn hostable(&self, cx: &Cx, region: &str, need: u32) -> bool {
        let next = next_launch(&self.config, &cx.view, &cx.workers, region, need, &[], cx.now);
        next.request.is_some_and(|r| r.count >= need)
    }

    /// The ladder across regions: launch in the active region; when nothing allowed is left there (every offering
    /// in the ledger, or blocked by the guardrails), move and go on.
    async fn fill(&self, cx: &mut Cx, desired: u32) -> Result<(), PortError> {
        for _ in 0..=self.config.regions.len() {
            let region = cx.state.placement.active_region.clone();
            let here = cx.workers.active_in(&region);
            let deficit = desired.saturating_sub(here as u32);
            let fleet_size = desired as usize;
            let reason =
                should_leave(&self.config, &cx.view, &cx.state.placement, here, fleet_size, cx.now).or_else(|| {
                    (deficit > 0 && !self.launchable(cx, &region, deficit)).then_some(MigrationReason::Exhausted)
                });
            // Leaving for a rate of interruptions is only worth it when the fleet runs at all.
            if let Some(reason) = reason.filter(|r| matches!(r, MigrationReason::Exhausted) || desired > 0) {
                if cx.state.operator.pinned.is_some() {
                    let exhausted = matches!(reason, MigrationReason::Exhausted);
                    cx.note(Event::Pinned { region: region.clone(), declined: reason });
                    if exhausted {
                        return Ok(());
                    }
                } else {
                    if matches!(reason, MigrationReason::Exhausted)
                        && toured_in_vain(&self.config, cx.state.fruitless_migrations)
                    {
                        cx.note(Event::Staying {
                            region: region.clone(),
                            fruitless_migrations: cx.state.fruitless_migrations,
                        });
                        let message = format!(
                            "capacity is short in every region: the fleet stays in {region} and keeps trying there, \
                             backing off ({} migrations gained no worker)",
                            cx.state.fruitless_migrations
                        );
                        self.alert(cx, AlertKind::NoRegion, "all", message).await?;
                        return Ok(());
                    }
                    match self.choose(cx).await? {
                        Some(target) => {
                            self.migrate(cx, &target.region, reason);
                            continue;
                        }
                        None if matches!(reason, MigrationReason::Exhausted) => return Ok(()),
                        None => {}
                    }
                }
            }
            if deficit == 0 {
                cx.note(Event::Satisfied { region, workers: here as u32 });
                return Ok(());
            }
            let got = self.acquire_in(cx, &region, deficit).await?;
            if cx.state.config_error.is_some() {
                return Ok(());
            }
            if got >= deficit {
                continue;
            }
            if self.launchable(cx, &region, deficit - got) {
                // Short for another reason (a call that failed, capacity the fleet call did not find): the next
                // round retries after the backoff.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether any launch is allowed in `region` now: some offering out of the ledger, within the guardrails.
    fn launchable(&self, cx: &Cx, region: &str, need: u32) -> bool {
        next_launch(&self.config, &cx.view, &cx.workers, region, need, &[], cx.now).request.is_some()
    }

    /// The ladder within one region; returns how many workers were launched.
    async fn acquire_in(&self, cx: &mut Cx, region: &str, need: u32) -> Result<u32, PortError> {
        self.acquire_in_after(cx, region, need, Vec::new()).await
    }

    async fn acquire_in_after(
        &self,
        cx: &mut Cx,
        region: &str,
        need: u32,
        mut tried: Vec<CapacityType>,
    ) -> Result<u32, PortError> {
        let mut got = 0;
        while got < need {
            let next = next_launch(&self.config, &cx.view, &cx.workers, region, need - got, &tried, cx.now);
            for (capacity_type, why) in next.skipped {
                if why != Skip::Tried {
                    cx.note(Event::Skipped { region: region.to_owned(), capacity_type, why });
                }
            }
            let Some(request) = next.request else { break };
            tried.push(request.capacity_type);
            got += self.launch(cx, &request).await?;
            if cx.state.config_error.is_some() {
                break;
            }
        }
        Ok(got)
    }

    async fn launch(&self, cx: &mut Cx, request: &LaunchRequest) -> Result<u32, PortError> {
        cx.launches += 1;
        let token = client_token(&cx.control_id, cx.state.acquire_round, cx.launches);
        cx.note(Event::Launch {
            region: request.region.clone(),
            capacity_type: request.capacity_type,
            count: request.count,
            overrides: request.overrides.len(),
            client_token: token.clone(),
        });
        let outcome = match self.world.launch(request, &self.config.fleet, &token).await {
            Ok(outcome) => outcome,
            Err(error) => {
                cx.note(Event::LaunchFailed { region: request.region.clone(), reason: error.to_string() });
                return Ok(0);
            }
        };
        cx.note(Event::Launched {
            region: request.region.clone(),
            instances: outcome.launched.iter().map(|w| w.instance_id.clone()).collect(),
            failures: outcome.failures.clone(),
        });
        let launched = outcome.launched.len() as u32;
        if launched > 0 {
            cx.state.fruitless_migrations = 0;
        }
        cx.workers.extend(outcome.launched);
        for failure in &outcome.failures {
            self.learn_launch_failure(cx, request, failure).await?;
        }
        Ok(launched)
    }

    /// Per-offering errors feed the ledger at once.
    async fn learn_launch_failure(
        &self,
        cx: &mut Cx,
        request: &LaunchRequest,
        failure: &LaunchFailure,
    ) -> Result<(), PortError> {
        let offerings = failed_offerings(request, failure.offering.as_ref());
        match classify(&failure.code) {
            LaunchErrorKind::Capacity => {
                for offering in &offerings {
                    self.block(cx, offering, BlockCause::Shortage).await?;
                }
            }
            LaunchErrorKind::Quota => {
                if let Some(offering) = offerings.first() {
                    self.block_quota(cx, offering, &failure.code).await?;
                }
            }
            LaunchErrorKind::Configuration => {
                cx.state.config_error =
                    Some(ConfigError { code: failure.code.clone(), message: failure.message.clone(), at: cx.now });
                let message = format!(
                    "launches in {} fail with {} ({}); launching stopped until the configuration is fixed and an \
                     acquire_capacity job with clear_errors is sent",
                    request.region, failure.code, failure.message
                );
                self.alert(cx, AlertKind::Configuration, &failure.code, message).await?;
            }
            LaunchErrorKind::Transient => {}
        }
        Ok(())
    }

    async fn block(&self, cx: &mut Cx, offering: &Offering, cause: BlockCause) -> Result<(), PortError> {
        let block = self.config.ledger.block(cx.view.offering(offering), offering, cause, cx.now);
        self.world.put_block(&self.config.fleet, &block).await?;
        cx.note(Event::Blocked { offering: offering.clone(), cause, until: block.until });
        cx.view.apply_block(block);
        Ok(())
    }

    async fn block_quota(&self, cx: &mut Cx, offering: &Offering, code: &str) -> Result<(), PortError> {
        let bucket = offering.quota_bucket();
        let previous = cx.view.quota(&bucket).cloned();
        // One call answers the quota error once per override of the bucket: one block is enough.
        if previous.as_ref().is_some_and(|p| p.last_at == cx.now && p.error_code == code) {
            return Ok(());
        }
        let block = self.config.ledger.block_quota(previous.as_ref(), &bucket, code, cx.now);
        self.world.put_quota(&self.config.fleet, &block).await?;
        cx.note(Event::QuotaBlocked { bucket: bucket.key(), error_code: code.into(), until: block.until });
        cx.view.apply_quota(block);
        let message = format!(
            "{code} in {}: {} capacity of the {} family is out of placement for {}; raise the quota",
            bucket.region,
            gameforge_planner::offering::capacity_name(bucket.capacity_type),
            bucket.family,
            self.config.ledger.quota_ttl
        );
        self.alert(cx, AlertKind::Quota, &bucket.key(), message).await
    }

    async fn alert(&self, cx: &mut Cx, kind: AlertKind, key: &str, message: String) -> Result<(), PortError> {
        let key = format!("{kind:?}/{key}");
        if !cx.state.alert_due(&key, cx.now) {
            return Ok(());
        }
        let alert = Alert { fleet: self.config.fleet.clone(), kind, at: cx.now, message: message.clone() };
        self.world.alert(&alert).await?;
        cx.state.alerted.insert(key, cx.now);
        cx.note(Event::Alert { kind, message });
        Ok(())
    }

    /// The best region to move to, or none (with an alert).
    async fn choose(&self, cx: &mut Cx) -> Result<Option<Target>, PortError> {
        for stamp in &self.config.regions {
            if stamp.region != cx.state.placement.active_region && !cx.readiness.contains_key(&stamp.region) {
                let ready = match self.world.readiness(stamp).await {
                    Ok(readiness) => readiness.ready(),
                    Err(error) => {
                        tracing::warn!(region = %stamp.region, %error, "readiness unknown; not a target");
                        false
                    }
                };
                cx.readiness.insert(stamp.region.clone(), ready);
            }
        }
        let regions: Vec<String> = self.config.regions.iter().map(|r| r.region.clone()).collect();
        let types: Vec<String> = self.config.instance_types.iter().map(|t| t.name.clone()).collect();
        // The emulator (and some partitions) do not answer; the configured order is the fallback.
        let scores = self.world.placement_scores(&regions, &types, cx.state.desired.max(1)).await.unwrap_or_default();
        match choose_target(&self.config, &cx.view, &cx.state.placement, &cx.readiness, &scores, cx.now) {
            Ok(target) => Ok(Some(target)),
            Err(rejected) => {
                let from = cx.state.placement.active_region.clone();
                cx.note(Event::NoTarget { from: from.clone(), rejected });
                let message = format!("no region can take the fleet (active: {from}); it stays short");
                self.alert(cx, AlertKind::NoRegion, "all", message).await?;
                Ok(None)
            }
        }
    }

    fn migrate(&self, cx: &mut Cx, to: &str, reason: MigrationReason) {
        let from = cx.state.placement.active_region.clone();
        cx.state.placement.migrate(&self.config, to, reason.clone(), cx.now);
        // A new region starts a new acquisition.
        cx.state.acquire_round = 0;
        cx.state.next_attempt_at = None;
        if reason == MigrationReason::Exhausted {
            cx.state.fruitless_migrations = cx.state.fruitless_migrations.saturating_add(1);
        }
        cx.note(Event::Migrate { from, to: to.to_owned(), reason });
    }

    async fn schedule_retry(&self, cx: &mut Cx) -> Result<(), PortError> {
        let round = cx.state.acquire_round + 1;
        let backoff = Backoff::new(self.config.retry.base.0, self.config.retry.cap.0);
        // Full jitter, but never sooner than a second, so a retry never races the invocation that scheduled it.
        let delay = backoff.ceiling(round - 1).mul_f64(self.world.jitter()).max(Duration::from_secs(1));
        let job = ControlJob {
            version: CONTRACT_VERSION,
            control_id: format!("acquire-{}-{round}", cx.now.timestamp_millis()),
            fleet: self.config.fleet.clone(),
            emitted_at: cx.now,
            command: ControlCommand::AcquireCapacity { round, clear_errors: false, reason: "shortfall".into() },
        };
        self.world.schedule(&job, delay).await?;
        cx.state.acquire_round = round;
        cx.state.next_attempt_at = Some(cx.now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX));
        cx.note(Event::Retry { round, delay_s: delay.as_secs_f64() });
        Ok(())
    }

    /// Drains what the fleet no longer needs: every worker outside the active region once the active region has
    /// the desired size, and the surplus of the active region (on-demand first, newest first).
    async fn shrink(&self, cx: &mut Cx) -> Result<(), PortError> {
        let active = cx.state.placement.active_region.clone();
        let victims: Vec<(String, String, DrainReason)> = surplus(&cx.workers, &active, cx.state.desired as usize)
            .into_iter()
            .map(|(w, why)| (w.instance_id.clone(), w.offering.region.clone(), why))
            .collect();
        for (instance_id, region, why) in victims {
            self.drain(cx, &instance_id, &region, DrainCause::Fleet(why)).await?;
        }
        Ok(())
    }

    async fn drain(&self, cx: &mut Cx, instance_id: &str, region: &str, why: DrainCause) -> Result<(), PortError> {
        if let Some(stamp) = self.config.stamp(region)
            && let Err(error) = self.world.drain(stamp, instance_id).await
        {
            // The replacement matters more than the drain; ECS drains on the spot notice by itself too.
            tracing::warn!(%instance_id, %error, "could not set the container instance to DRAINING");
        }
        self.world.mark_draining(region, instance_id, cx.now).await?;
        if let Some(worker) = cx.workers.iter_mut().find(|w| w.instance_id == instance_id) {
            worker.state = WorkerState::Draining;
            worker.draining_since = Some(cx.now);
        }
        cx.note(Event::Drain { instance_id: instance_id.to_owned(), region: region.to_owned(), why });
        Ok(())
    }

    /// Terminates draining workers whose job has finished (or that ran out of time).
    async fn reap(&self, cx: &mut Cx) -> Result<(), PortError> {
        let timeout = chrono::Duration::from_std(self.drain_timeout).unwrap_or(chrono::Duration::MAX);
        let mut done: HashMap<String, Vec<String>> = HashMap::new();
        for worker in cx.workers.iter().filter(|w| w.state == WorkerState::Draining) {
            let expired = worker.draining_since.is_some_and(|since| cx.now >= since + timeout);
            let idle = match self.config.stamp(&worker.offering.region) {
                Some(stamp) => {
                    self.world.tasks_running(stamp, &worker.instance_id).await.map(|n| n == 0).unwrap_or(false)
                }
                None => true,
            };
            if expired || idle {
                done.entry(worker.offering.region.clone()).or_default().push(worker.instance_id.clone());
            }
        }
        for (region, instances) in done {
            self.world.terminate(&region, &instances).await?;
            cx.workers.retain(|w| !instances.contains(&w.instance_id));
            cx.note(Event::Terminate { region, instances });
        }
        Ok(())
    }

    /// Keeps each region's ECS service at one task per worker.
    async fn size_services(&self, cx: &mut Cx) -> Result<(), PortError> {
        for stamp in &self.config.regions {
            let count = cx.workers.active_in(&stamp.region) as u32;
            let relevant = count > 0
                || stamp.region == cx.state.placement.active_region
                || cx.workers.iter().any(|w| w.offering.region == stamp.region);
            if relevant {
                self.world.set_service_size(stamp, &stamp.ecs_service, count).await?;
                cx.note(Event::ServiceSize { region: stamp.region.clone(), count });
            }
        }
        self.size_cpu_service(cx).await
    }

    /// The tier starts where the fleet is and stays there until it goes off: CPU capacity is not what the fleet
    /// moved for, and a moved CPU worker would load its model again.
    async fn size_cpu_service(&self, cx: &mut Cx) -> Result<(), PortError> {
        let Some(tier) = &self.config.cpu_tier else { return Ok(()) };
        let count = cx.state.cpu.desired;
        let region = (cx.state.cpu.region.clone())
            .filter(|r| self.config.stamp(r).is_some())
            .unwrap_or_else(|| cx.state.placement.active_region.clone());
        let Some(stamp) = self.config.stamp(&region) else { return Ok(()) };
        if count > 0 || cx.state.cpu.region.is_some() {
            self.world.set_service_size(stamp, &tier.ecs_service, count).await?;
            cx.note(Event::CpuServiceSize { region: region.clone(), count });
        }
        cx.state.cpu.region = (count > 0).then_some(region);
        Ok(())
    }
}

/// EC2 client tokens are at most 64 ASCII characters; the same job, round and call give the same token, so that
/// a retried call never launches twice.
fn client_token(control_id: &str, round: u32, call: u32) -> String {
    let suffix = format!("-{round}-{call}");
    let keep = 64 - suffix.len();
    let base: String =
        control_id.chars().filter(char::is_ascii).rev().take(keep).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_fit_and_repeat() {
        let token = client_token(&"x".repeat(100), 3, 2);
        assert_eq!(token.len(), 64);
        assert!(token.ends_with("-3-2"));
        assert_eq!(client_token("sig-abc-0", 0, 1), "sig-abc-0-0-1");
    }
}
