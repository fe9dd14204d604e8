//! The job status store's edge: the operations a job's life needs, each one atomic.

use std::future::Future;

use chrono::{DateTime, Utc};
use gameforge_aws::PortError;
use gameforge_contract::{GenerationJob, JobResult, Placement};

use crate::{JobKey, JobRecord, Owner};

/// Answer to a cancellation request.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Not started: the job is final (`cancelled`) now, and no worker will run it.
    Cancelled(JobRecord),
    /// Running: the worker stops it at its next step and answers `cancelled`.
    Requested(JobRecord),
    /// Too late: it already has its final result.
    AlreadyFinal(JobRecord),
    NotFound,
}

/// Answer to a worker that wants to run a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The job is this delivery's to run; the record counts this run.
    Run(JobRecord),
    /// The job already has its final result (a cancellation, an earlier delivery); announce it if that has
    /// not happened yet, and run nothing.
    Final(JobRecord),
    /// Another delivery of the same job id (a duplicate message) is running it.
    Busy(JobRecord),
    /// The message is not the job the store holds under its key (another request, or an owner that never
    /// submitted it): nothing is run and the record is left alone.
    Refused(String),
}

/// Answer to a worker's progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressAnswer {
    Continue,
    /// Stop: a cancellation was asked for.
    Cancel,
    /// Stop: this delivery no longer owns the job (another delivery took it over).
    Lost,
}

/// Answer to recording a final result.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Recorded,
    /// The job had a final result already, which stands.
    AlreadyFinal(Box<JobRecord>),
    /// Another delivery holds the claim and runs the job: its answer will be the job's, not this one.
    Busy(Box<JobRecord>),
    /// The answer is not for the job the store holds under its key (see [`Claim::Refused`]).
    Refused(String),
}

pub trait JobStore: Send + Sync + 'static {
    /// Records a new job of `owner` in state `submitted`; `Err(existing)` when the owner has used the id already.
    fn create(
        &self,
        owner: &Owner,
        job: &GenerationJob,
    ) -> impl Future<Output = Result<Result<(), Box<JobRecord>>, PortError>> + Send;
    /// `submitted` → `queued`, once the job is on the queue; nothing if it has moved on already.
    fn mark_queued(&self, key: &JobKey, gpu_only: Option<&str>) -> impl Future<Output = Result<(), PortError>> + Send;
    /// A waiting job was handed to the GPUs (by a CPU worker that could not serve it): its status says why. Nothing
    /// if it has moved on already.
    fn mark_gpu_only(&self, key: &JobKey, why: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    fn get(&self, key: &JobKey) -> impl Future<Output = Result<Option<JobRecord>, PortError>> + Send;
    fn cancel(&self, key: &JobKey, now: DateTime<Utc>)
    -> impl Future<Output = Result<CancelOutcome, PortError>> + Send;
    /// Takes the job for the delivery `delivery` (its SQS message id) on a worker at `placement`, if `job` is the
    /// request recorded under `key` (or nothing is recorded and the job has no owner).
    fn claim(
        &self,
        key: &JobKey,
        job: &GenerationJob,
        delivery: &str,
        placement: Option<&Placement>,
    ) -> impl Future<Output = Result<Claim, PortError>> + Send;
    fn progress(
        &self,
        key: &JobKey,
        delivery: &str,
        step: u32,
        total: u32,
    ) -> impl Future<Output = Result<ProgressAnswer, PortError>> + Send;
    /// Hands the job back cleanly: `running` → `queued`, counted as a release rather than a crash.
    fn release(&self, key: &JobKey, delivery: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Records the final result (before it is announced anywhere), only where `delivery` holds the claim or no
    /// delivery does, and only for the request recorded under `key`: `job` is the request the answer is about
    /// (`None` for a message that is not a valid job, which can answer only a key with no recorded request).
    fn finish(
        &self,
        key: &JobKey,
        result: &JobResult,
        job: Option<&GenerationJob>,
        delivery: &str,
    ) -> impl Future<Output = Result<Finish, PortError>> + Send;
    /// The final result has been sent to the reply queue; its event may still be due.
    fn mark_replied(&self, key: &JobKey) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The final result has been sent to the reply queue and the event bus.
    fn mark_announced(&self, key: &JobKey) -> impl Future<Output = Result<(), PortError>> + Send;
}
