//! Submission: validate, record, enqueue. The record comes first, so that a job id is taken once; the message
//! follows, and a submission that died between the two is completed by the next submission of the same id.

use gameforge_aws::PortError;
use gameforge_contract::{ContractError, GenerationJob, JobState, Message, Violation};
use gameforge_planner::cpu_tier::{GpuOnly, Route};

use crate::record::fingerprint;
use crate::reply_to::{ReplyQueues, ReplyToError};
use crate::{JobKey, JobRecord, JobSender, JobStore, Owner};

#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// A new job, now on the queue.
    New,
    /// The id was submitted before with the same request: nothing new was enqueued.
    Existing(Box<JobRecord>),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid job: {0}")]
    Invalid(#[source] ContractError),
    #[error("invalid reply_to: {0}")]
    ReplyTo(#[source] ReplyToError),
    #[error("job {job_id} was submitted before with a different request; choose another job id")]
    Conflict { job_id: String, existing: Box<JobRecord> },
    #[error(transparent)]
    Aws(#[from] PortError),
}

impl SubmitError {
    /// Every violation of a job refused for what it says (empty for other errors).
    pub fn violations(&self) -> Vec<Violation> {
        match self {
            SubmitError::Invalid(e) => e.violations(),
            SubmitError::ReplyTo(e) => vec![Violation::new("reply_to", e.to_string())],
            _ => Vec::new(),
        }
    }
}

/// Submits `job` for `owner` once: the same id again with the same request returns the existing job. A
/// `reply_to` that breaks [the rule](crate::reply_to) is refused before anything is recorded or sent.
pub async fn submit<S: JobStore, Q: JobSender, R: ReplyQueues>(
    store: &S,
    queue: &Q,
    replies: &R,
    job: &GenerationJob,
    owner: &Owner,
) -> Result<Submitted, SubmitError> {
    job.validate().map_err(SubmitError::Invalid)?;
    if let Some(url) = &job.reply_to {
        replies.check(url).await?.map_err(SubmitError::ReplyTo)?;
    }
    let digest = fingerprint(job);
    let key = JobKey::owned(owner, &job.job_id);
    match store.create(owner, job).await? {
        Ok(()) => {}
        Err(existing) => {
            if existing.fingerprint.as_deref().is_some_and(|f| f != digest) {
                return Err(SubmitError::Conflict { job_id: job.job_id.clone(), existing });
            }
            if existing.state != JobState::Submitted {
                return Ok(Submitted::Existing(existing));
            }
            // Recorded but perhaps never sent: send it now. If the first attempt did send, the job has two
            // messages, and the worker's claim lets only one of them run.
            tracing::info!(job_id = %job.job_id, "completing an earlier submission");
            let original = existing.job.clone().unwrap_or_else(|| job.clone());
            let route = queue.send(&original, owner).await?;
            store.mark_queued(&key, gpu_only(&route).as_deref()).await?;
            return Ok(Submitted::Existing(existing));
        }
    }
    let route = queue.send(job, owner).await?;
    store.mark_queued(&key, gpu_only(&route).as_deref()).await?;
    Ok(Submitted::New)
}

/// What the job's status says of its route: why only a GPU may serve it, where there was a CPU tier to ask.
fn gpu_only(route: &Route) -> Option<String> {
    match route {
        Route::GpuOnly(GpuOnly::NoCpuTier) | Route::AnyTier => None,
        Route::GpuOnly(reason) => Some(reason.to_string()),
    }
}
