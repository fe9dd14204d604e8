//! The executor's edges, one narrow trait each. `aws/` implements them with EC2, ECS, S3, SQS, DynamoDB and
//! EventBridge; the simulator implements them with a simulated AWS under a virtual clock. The engine sees only
//! these traits.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gameforge_contract::ControlJob;
use gameforge_planner::Offering;
use gameforge_planner::config::RegionStamp;
use gameforge_planner::fleet::Worker;
use gameforge_planner::ladder::LaunchRequest;
use gameforge_planner::ledger::{Interruption, LedgerView, OfferingBlock, QuotaBlock};
use gameforge_planner::scaling::Demand;
use serde::{Deserialize, Serialize};

use crate::journal::Decisions;
use crate::state::FleetState;

pub use gameforge_aws::PortError;

/// Time, and the randomness of backoff jitter (a seeded generator in the simulator, so runs repeat).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// A number in `[0, 1)`.
    fn jitter(&self) -> f64;
}

/// The durable ledger and fleet state.
pub trait LedgerStore: Send + Sync {
    fn load_ledger(
        &self,
        fleet: &str,
    ) -> impl Future<Output = Result<(LedgerView, Option<FleetState>), PortError>> + Send;
    fn put_block(&self, fleet: &str, block: &OfferingBlock) -> impl Future<Output = Result<(), PortError>> + Send;
    fn put_quota(&self, fleet: &str, block: &QuotaBlock) -> impl Future<Output = Result<(), PortError>> + Send;
    fn put_interruptions(
        &self,
        fleet: &str,
        region: &str,
        recent: &[Interruption],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Saves the state if the stored one is still at `state.version - 1` (or absent for version 1).
    fn save_state(
        &self,
        fleet: &str,
        state: &FleetState,
    ) -> impl Future<Output = Result<SaveOutcome, PortError>> + Send;
    /// Takes the fleet's lock for `lease`; answers who holds it otherwise.
    fn lock(
        &self,
        fleet: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> impl Future<Output = Result<LockOutcome, PortError>> + Send;
    fn unlock(&self, fleet: &str, owner: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    fn is_done(&self, fleet: &str, control_id: &str) -> impl Future<Output = Result<bool, PortError>> + Send;
    fn mark_done(
        &self,
        fleet: &str,
        control_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Keeps one invocation's decisions for operators, for [`DECISIONS_KEPT`].
    fn record_decisions(
        &self,
        fleet: &str,
        decisions: &Decisions,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The newest `limit` decisions kept, newest first.
    fn recent_decisions(
        &self,
        fleet: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Decisions>, PortError>> + Send;
}

/// How long the ledger keeps decisions for `gameforge fleet explain`.
pub const DECISIONS_KEPT: chrono::Duration = chrono::Duration::days(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Someone else saved first.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    Acquired,
    HeldElsewhere { until: DateTime<Utc> },
}

/// What one launch call produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LaunchOutcome {
    pub launched: Vec<Worker>,
    pub failures: Vec<LaunchFailure>,
}

/// One failed offering of a launch call, or the whole call (`offering` absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchFailure {
    pub offering: Option<Offering>,
    pub code: String,
    pub message: String,
}

/// EC2.
pub trait Compute: Send + Sync {
    /// One synchronous launch; per-offering errors are in the outcome, not in `Err`, which is for calls that
    /// could not be made at all (throttled past retries, unreachable).
    fn launch(
        &self,
        request: &LaunchRequest,
        fleet: &str,
        client_token: &str,
    ) -> impl Future<Output = Result<LaunchOutcome, PortError>> + Send;
    /// The fleet's live instances (pending, running or draining) in the given regions.
    fn workers(&self, fleet: &str, regions: &[String]) -> impl Future<Output = Result<Vec<Worker>, PortError>> + Send;
    fn mark_draining(
        &self,
        region: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn terminate(&self, region: &str, instance_ids: &[String]) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Spot placement scores per region (1–10); an error when the API does not answer.
    fn placement_scores(
        &self,
        regions: &[String],
        instance_types: &[String],
        target: u32,
    ) -> impl Future<Output = Result<HashMap<String, u8>, PortError>> + Send;
}

/// Whether a region's stamp can run workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub cluster: bool,
    pub task_definition: bool,
    pub model: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.cluster && self.task_definition && self.model
    }
}

/// ECS (and the model bucket of each stamp).
pub trait Orchestrator: Send + Sync {
    /// Sets the instance's container instance to DRAINING, so that its worker receives SIGTERM.
    fn drain(&self, stamp: &RegionStamp, instance_id: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    fn tasks_running(
        &self,
        stamp: &RegionStamp,
        instance_id: &str,
    ) -> impl Future<Output = Result<usize, PortError>> + Send;
    /// Sets the desired count of `service` in the stamp's cluster: the stamp's GPU service, or the CPU tier's.
    fn set_service_size(
        &self,
        stamp: &RegionStamp,
        service: &str,
        count: u32,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn readiness(&self, stamp: &RegionStamp) -> impl Future<Output = Result<Readiness, PortError>> + Send;
}

/// The generation job queues, as demand.
pub trait Backlog: Send + Sync {
    fn demand(&self) -> impl Future<Output = Result<Backlogs, PortError>> + Send;
}

/// The two job queues. Submission routes a job the CPU tier could serve to `any_tier` and every other job to
/// `gpu_only`; GPU workers read both, CPU workers only `any_tier`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlogs {
    pub gpu_only: Demand,
    pub any_tier: Demand,
}

impl Backlogs {
    /// What the GPU fleet scales for: everything, since GPU workers serve both queues. While the CPU tier runs,
    /// its jobs in flight count too, which errs toward more GPU workers, the ones the fleet wants anyway.
    pub fn total(&self) -> Demand {
        self.gpu_only.plus(self.any_tier)
    }
}

/// Control jobs for later: the next acquisition round after a backoff.
pub trait RetryQueue: Send + Sync {
    fn schedule(&self, job: &ControlJob, delay: Duration) -> impl Future<Output = Result<(), PortError>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A quota stops a capacity type in a region until an operator raises it.
    Quota,
    /// Launches fail because of the configuration; the executor stopped launching.
    Configuration,
    /// No region can take the fleet.
    NoRegion,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub fleet: String,
    pub kind: AlertKind,
    pub at: DateTime<Utc>,
    pub message: String,
}

/// Operator alerts.
pub trait Alerts: Send + Sync {
    fn alert(&self, alert: &Alert) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Everything the executor talks to.
pub trait World: Clock + LedgerStore + Compute + Orchestrator + Backlog + RetryQueue + Alerts {}

impl<T: Clock + LedgerStore + Compute + Orchestrator + Backlog + RetryQueue + Alerts> World for T {}
