//! Submission: validate, record, enqueue. The record comes first, so that a job id is taken once; the message
//! follows, and a submission that died between the two is completed by the next submission of the same id.

use gameforge_aws::PortError;
use gameforge_contract::{ContractError, GenerationJob, JobState, Message, Violation};

use crate::record::fingerprint;
use crate::{JobRecord, JobSender, JobStore};

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
    #[error("job {job_id} was submitted before with a different request; choose another job id")]
    Conflict { job_id: String, existing: Box<JobRecord> },
    #[error(transparent)]
    Aws(#[from] PortError),
}

impl SubmitError {
    /// Every violation of an invalid job (empty for other errors).
    pub fn violations(&self) -> Vec<Violation> {
        match self {
            SubmitError::Invalid(e) => e.violations(),
            _ => Vec::new(),
        }
    }
}

/// Submits `job` once: the same id again with the same request returns the existing job.
pub async fn submit<S: JobStore, Q: JobSender>(
    store: &S,
    queue: &Q,
    job: &GenerationJob,
    submitted_by: Option<&str>,
) -> Result<Submitted, SubmitError> {
    job.validate().map_err(SubmitError::Invalid)?;
    let digest = fingerprint(job);
    match store.create(job, &digest, submitted_by).await? {
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
            queue.send(&original).await?;
            store.mark_queued(&job.job_id).await?;
            return Ok(Submitted::Existing(existing));
        }
    }
    queue.send(job).await?;
    store.mark_queued(&job.job_id).await?;
    Ok(Submitted::New)
}
