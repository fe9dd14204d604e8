//! The CPU fallback tier: when no GPU can be had anywhere, CPU workers (which capacity shortages almost never
//! reach) serve the jobs small enough to finish on a CPU in time, and give the work back to GPUs as soon as GPUs
//! return.
//!
//! Routing is decided once, at submission, by [`route`]: a job the tier could serve goes to the "any tier" queue,
//! every other job to the "GPU only" queue. GPU workers read both queues, CPU workers only the first, so no worker
//! ever receives a job it must refuse at submission time, and nothing circulates between workers. The one
//! judgement that can change while a job waits is its deadline: a CPU worker checks [`cpu_can_finish`] when it
//! receives a job and moves one it can no longer finish in time to the GPU-only queue, where no CPU worker reads
//! it again. A job therefore moves at most once, in one direction.
//!
//! Whether the tier runs is [`decide`]'s: it enters when every allowed GPU offering in every allowed region is
//! blocked (or eligible jobs have waited too long with no GPU worker to take them) and leaves once GPU workers
//! have been serving for `leave_after`: GPU workers first, then the tier drained.

use chrono::{DateTime, Utc};
use gameforge_contract::{GenerationJob, Violation};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MAX_SPAN, MAX_WORKERS, WorkerLimits};
use crate::duration::Span;
use crate::scaling::{Demand, ScaleMemory, desired_workers};

/// The tier's settings in the fleet file (`cpu_tier`); absent means the fleet has no CPU tier. The tier runs on
/// Fargate in the fleet's active region: CPU capacity there is all but never short, and no instances, zones or
/// capacity types need choosing, so one ECS service's desired count is the whole actuator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuTier {
    /// The tier's ECS service, in the `ecs_cluster` of every region (the tier runs wherever the fleet is).
    pub ecs_service: String,
    /// The worker's task size, as the template's CPU task definition gives it.
    pub vcpus: u32,
    pub memory_gib: u32,
    /// The task's pace, measured at this size (see BENCHMARKS.md).
    pub pace: CpuPace,
    pub price_per_hour: f64,
    /// Which jobs the tier may take.
    pub budget: JobBudget,
    pub enter: EnterPolicy,
    /// The most CPU workers at once; the GPU fleet's own limits are separate.
    pub max_workers: u32,
    /// Queued plus running jobs one CPU worker is expected to carry.
    pub target_backlog_per_worker: u32,
}

/// A CPU worker's measured pace. A job's estimate is
/// `job_seconds + decode_seconds_per_megapixel × megapixels + step_seconds_per_megapixel × megapixels × evaluations`
/// where a guided step is two UNet evaluations: linear in pixels, which attention's quadratic cost makes
/// optimistic for large images, so the budget keeps the tier to the sizes the pace was measured at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuPace {
    /// Seconds of one UNet evaluation per megapixel of image.
    pub step_seconds_per_megapixel: f64,
    /// Seconds of the VAE decode per megapixel of image.
    pub decode_seconds_per_megapixel: f64,
    /// Seconds every job costs whatever its size (prompt encoding, writing the image).
    pub job_seconds: f64,
}

/// The jobs a CPU worker may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobBudget {
    /// The largest job in megapixels × UNet evaluations (a guided step is two evaluations): 4 guided steps at
    /// 512² are 2.1.
    pub max_megapixel_evaluations: f64,
    /// The largest image, in megapixels.
    pub max_megapixels: f64,
    /// The models the tier serves (names or repo ids as jobs give them); empty means every model.
    #[serde(default)]
    pub models: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterPolicy {
    /// The tier also starts when an eligible job has waited this long and no GPU worker is running, even while
    /// some GPU offering is still untried.
    pub oldest_job_waited: Span,
    /// GPU workers must have been running this long before the tier drains: one GPU launched and reclaimed a
    /// minute later must not send the tier's warm workers away.
    pub leave_after: Span,
}

/// Why a job may only run on a GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum GpuOnly {
    #[error("the fleet has no CPU tier")]
    NoCpuTier,
    #[error("the CPU tier does not serve model {model}")]
    Model { model: String },
    #[error("{megapixels:.2} megapixels is larger than the CPU tier's {max:.2}")]
    Size { megapixels: f64, max: f64 },
    #[error("{work:.2} megapixel-evaluations is more than the CPU tier's budget of {max:.2}")]
    Work { work: f64, max: f64 },
    #[error("a CPU worker needs about {needs} and the deadline is {left} away")]
    Deadline { needs: Span, left: Span },
}

/// Where a job is sent at submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "queue", rename_all = "snake_case")]
pub enum Route {
    /// Any worker, CPU or GPU, may serve it.
    AnyTier,
    GpuOnly(GpuOnly),
}

/// Megapixels × UNet evaluations: the unit of a job's denoising work.
pub fn work(job: &GenerationJob) -> f64 {
    megapixels(job) * f64::from(job.steps) * evaluations_per_step(job)
}

pub fn megapixels(job: &GenerationJob) -> f64 {
    f64::from(job.width) * f64::from(job.height) / 1e6
}

/// Classifier-free guidance runs the UNet twice per step; at a scale of 1 or less the pipeline skips it.
fn evaluations_per_step(job: &GenerationJob) -> f64 {
    if job.guidance > 1.0 { 2.0 } else { 1.0 }
}

impl CpuPace {
    /// How long one worker takes for `job` at this pace.
    pub fn estimate(&self, job: &GenerationJob) -> Span {
        let mpx = megapixels(job);
        let seconds =
            self.job_seconds + self.decode_seconds_per_megapixel * mpx + self.step_seconds_per_megapixel * work(job);
        Span::from_secs_ceil(seconds)
    }
}

impl CpuTier {
    /// The tier from its JSON alone (the fleet file's `cpu_tier` section, as submission and the CPU worker are
    /// given it), checked as the fleet file checks it.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let tier: Self = serde_json::from_str(text).map_err(|e| ConfigError::NotJson(format!("cpu_tier: {e}")))?;
        let violations = tier.violations();
        if violations.is_empty() { Ok(tier) } else { Err(ConfigError::Invalid(violations)) }
    }

    /// The tier's scaling limits: its own size and backlog share, the GPU fleet's delays.
    pub fn limits(&self, fleet: &WorkerLimits) -> WorkerLimits {
        WorkerLimits {
            min: 0,
            max: self.max_workers,
            target_backlog_per_worker: self.target_backlog_per_worker,
            idle_before_zero: fleet.idle_before_zero,
            scale_in_delay: fleet.scale_in_delay,
        }
    }

    /// Whether the tier's budget admits `job`, whatever the time.
    pub fn admits(&self, job: &GenerationJob) -> Result<(), GpuOnly> {
        if !self.budget.models.is_empty() && !self.budget.models.contains(&job.model_id) {
            return Err(GpuOnly::Model { model: job.model_id.clone() });
        }
        let mpx = megapixels(job);
        if mpx > self.budget.max_megapixels {
            return Err(GpuOnly::Size { megapixels: mpx, max: self.budget.max_megapixels });
        }
        let work = work(job);
        if work > self.budget.max_megapixel_evaluations {
            return Err(GpuOnly::Work { work, max: self.budget.max_megapixel_evaluations });
        }
        Ok(())
    }

    pub fn violations(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                v.push(Violation::new(format!("cpu_tier.{field}"), message));
            }
        };
        check(!self.ecs_service.trim().is_empty(), "ecs_service", "must not be empty");
        let pace = &self.pace;
        for (field, value) in [
            ("pace.step_seconds_per_megapixel", pace.step_seconds_per_megapixel),
            ("pace.decode_seconds_per_megapixel", pace.decode_seconds_per_megapixel),
            ("pace.job_seconds", pace.job_seconds),
            ("price_per_hour", self.price_per_hour),
        ] {
            check(value.is_finite() && value >= 0.0, field, "must be a number, not negative");
        }
        check(pace.step_seconds_per_megapixel > 0.0, "pace.step_seconds_per_megapixel", "must be positive");
        // Fargate's task sizes: 0.25 to 16 vCPUs, up to 120 GiB.
        check(self.vcpus > 0 && self.vcpus <= 16, "vcpus", "must be 1 to 16 (a Fargate task size)");
        check(self.memory_gib > 0 && self.memory_gib <= 120, "memory_gib", "must be 1 to 120 (a Fargate task size)");
        check(
            self.budget.max_megapixel_evaluations.is_finite() && self.budget.max_megapixel_evaluations > 0.0,
            "budget.max_megapixel_evaluations",
            "must be positive",
        );
        check(
            self.budget.max_megapixels.is_finite() && self.budget.max_megapixels > 0.0,
            "budget.max_megapixels",
            "must be positive",
        );
        check(self.max_workers > 0, "max_workers", "must be positive");
        check(self.max_workers <= MAX_WORKERS, "max_workers", &format!("must be at most {MAX_WORKERS}"));
        check(self.target_backlog_per_worker > 0, "target_backlog_per_worker", "must be positive");
        for (field, span) in
            [("enter.oldest_job_waited", self.enter.oldest_job_waited), ("enter.leave_after", self.enter.leave_after)]
        {
            check(span <= MAX_SPAN, field, &format!("must be at most {MAX_SPAN}"));
        }
        v
    }
}

/// The queue a job goes to at submission.
pub fn route(tier: Option<&CpuTier>, job: &GenerationJob, now: DateTime<Utc>) -> Route {
    let Some(tier) = tier else { return Route::GpuOnly(GpuOnly::NoCpuTier) };
    if let Err(reason) = tier.admits(job) {
        return Route::GpuOnly(reason);
    }
    match deadline_check(tier.pace.estimate(job), job, now) {
        Ok(()) => Route::AnyTier,
        Err(reason) => Route::GpuOnly(reason),
    }
}

/// Whether a CPU worker that starts `job` at `now` finishes before the job's deadline.
pub fn cpu_can_finish(tier: &CpuTier, job: &GenerationJob, now: DateTime<Utc>) -> Result<(), GpuOnly> {
    deadline_check(tier.pace.estimate(job), job, now)
}

fn deadline_check(needs: Span, job: &GenerationJob, now: DateTime<Utc>) -> Result<(), GpuOnly> {
    let Some(deadline) = job.deadline else { return Ok(()) };
    let left = (deadline - now).to_std().map(Span).unwrap_or(Span::ZERO);
    if needs <= left { Ok(()) } else { Err(GpuOnly::Deadline { needs, left }) }
}

/// What the tier remembers between reconciles (saved with the fleet's state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierMemory {
    /// Since when the tier has been on, and why it came on.
    #[serde(default)]
    pub active: Option<Activation>,
    /// Since when GPU workers have been running without a break while the tier is on.
    #[serde(default)]
    pub gpu_back_since: Option<DateTime<Utc>>,
    /// Since when eligible jobs have been waiting without a break while the tier is off: a lower bound of the
    /// oldest one's age that needs no metric beyond the queue's counts.
    #[serde(default)]
    pub waiting_since: Option<DateTime<Utc>>,
    /// What the tier's scaling remembers while it is on.
    #[serde(default)]
    pub scale: ScaleMemory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub since: DateTime<Utc>,
    pub reason: EnterReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnterReason {
    /// Every allowed GPU offering in every allowed region is blocked.
    NoGpuAnywhere,
    /// An eligible job waited `oldest_job_waited` with no GPU worker running.
    EligibleJobsWaiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// GPU workers have been running for `leave_after`.
    GpuBack,
    /// Nothing eligible waits or runs.
    NoEligibleWork,
}

/// What the GPU side and the queues look like at one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierInputs {
    /// Whether a GPU may still be had: some allowed offering in an allowed region is out of the ledger, and the
    /// fleet has not toured every region in vain.
    pub gpu_offering_available: bool,
    /// GPU workers running (any region).
    pub gpu_workers: u32,
    /// The any-tier queue: the work the tier may take.
    pub eligible: Demand,
    /// CPU workers the tier has now (its last decision).
    pub current: u32,
}

/// The tier's size for this reconcile and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierDecision {
    pub desired: u32,
    /// Set when the tier came on at this reconcile.
    pub entered: Option<EnterReason>,
    /// Set when the tier went off at this reconcile (its workers finish or hand back their jobs).
    pub left: Option<LeaveReason>,
    pub memory: TierMemory,
}

/// Whether the tier runs and with how many workers. Once on, it scales as the GPU fleet does (`limits`: out at
/// once, in only after `scale_in_delay`, one worker kept warm until nothing was eligible for `idle_before_zero`),
/// and goes off when GPU workers have served for `leave_after` or it has scaled to zero.
pub fn decide(
    tier: &CpuTier,
    limits: &WorkerLimits,
    inputs: TierInputs,
    memory: &TierMemory,
    now: DateTime<Utc>,
) -> TierDecision {
    let off = |left, waiting_since| TierDecision {
        desired: 0,
        entered: None,
        left,
        memory: TierMemory { waiting_since, ..TierMemory::default() },
    };
    let Some(active) = &memory.active else {
        let waiting_since = (inputs.eligible.queued > 0).then(|| memory.waiting_since.unwrap_or(now));
        return match enter_reason(tier, inputs, waiting_since.map(|since| now - since)) {
            Some(reason) => {
                let scale = desired_workers(limits, inputs.eligible, 0, ScaleMemory::default(), now);
                TierDecision {
                    desired: scale.desired,
                    entered: Some(reason),
                    left: None,
                    memory: TierMemory {
                        active: Some(Activation { since: now, reason }),
                        scale: scale.memory,
                        ..TierMemory::default()
                    },
                }
            }
            None => off(None, waiting_since),
        };
    };
    let gpu_back_since = if inputs.gpu_workers > 0 { Some(memory.gpu_back_since.unwrap_or(now)) } else { None };
    if gpu_back_since.is_some_and(|since| now - since >= tier.enter.leave_after.as_chrono()) {
        return off(Some(LeaveReason::GpuBack), None);
    }
    let scale = desired_workers(limits, inputs.eligible, inputs.current, memory.scale, now);
    if scale.desired == 0 {
        return off(Some(LeaveReason::NoEligibleWork), None);
    }
    TierDecision {
        desired: scale.desired,
        entered: None,
        left: None,
        memory: TierMemory { active: Some(active.clone()), gpu_back_since, waiting_since: None, scale: scale.memory },
    }
}

fn enter_reason(tier: &CpuTier, inputs: TierInputs, waited: Option<chrono::Duration>) -> Option<EnterReason> {
    if inputs.eligible.queued == 0 || inputs.gpu_workers > 0 {
        return None;
    }
    if !inputs.gpu_offering_available {
        return Some(EnterReason::NoGpuAnywhere);
    }
    waited
        .is_some_and(|waited| waited >= tier.enter.oldest_job_waited.as_chrono())
        .then_some(EnterReason::EligibleJobsWaiting)
}

#[cfg(test)]
mod tests;
