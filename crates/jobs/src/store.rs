//! The job status store's edge: the operations a job's life needs, each one atomic.

use std::future::Future;

use chrono::{DateTime, Utc};
use gameforge_aws::PortError;
use gameforge_contract::{GenerationJob, JobResult, Placement};

use crate::JobRecord;

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
}

pub trait JobStore: Send + Sync + 'static {
    /// Records a new job in state `submitted`; `Err(existing)` when the id is taken.
    fn create(
        &self,
        job: &GenerationJob,
        fingerprint: &str,
        submitted_by: Option<&str>,
    ) -> impl Future<Output = Result<Result<(), Box<JobRecord>>, PortError>> + Send;
    /// `submitted` → `queued`, once the job is on the queue; nothing if it has moved on already.
    fn mark_queued(&self, job_id: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    fn get(&self, job_id: &str) -> impl Future<Output = Result<Option<JobRecord>, PortError>> + Send;
    fn cancel(&self, job_id: &str, now: DateTime<Utc>)
    -> impl Future<Output = Result<CancelOutcome, PortError>> + Send;
    /// Takes the job for the delivery `owner` (its SQS message id) on a worker at `placement`.
    fn claim(
        &self,
        job: &GenerationJob,
        owner: &str,
        placement: Option<&Placement>,
    ) -> impl Future<Output = Result<Claim, PortError>> + Send;
    fn progress(
        &self,
        job_id: &str,
        owner: &str,
        step: u32,
        total: u32,
    ) -> impl Future<Output = Result<ProgressAnswer, PortError>> + Send;
    /// Hands the job back cleanly: `running` → `queued`, counted as a release rather than a crash.
    fn release(&self, job_id: &str, owner: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Records the final result (before it is announced anywhere); `job` fills in a record a worker made.
    fn finish(
        &self,
        result: &JobResult,
        job: Option<&GenerationJob>,
    ) -> impl Future<Output = Result<Finish, PortError>> + Send;
    /// The final result has been sent to the reply queue and the event bus.
    fn mark_announced(&self, job_id: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}
