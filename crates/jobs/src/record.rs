//! One job as the status store holds it, and the pure rules about it.

use chrono::{DateTime, Utc};
use gameforge_contract::{
    CONTRACT_VERSION, ErrorClass, GenerationJob, JobFailure, JobResult, JobState, JobStatus, JobStatusReport,
    Placement, Progress, Timings,
};
use sha2::{Digest, Sha256};

use crate::{JobKey, Owner};

/// A job's item in the status store.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub job_id: String,
    pub state: JobState,
    /// The job as submitted; absent when the record was made by a worker for a job sent with a plain
    /// `SendMessage`, or by the rejection of a message that was not a valid job.
    pub job: Option<GenerationJob>,
    /// What the job asks to be generated and where ([`fingerprint`]): a second submission of the id with a
    /// different request is a conflict, not a duplicate.
    pub fingerprint: Option<String>,
    /// Who submitted it (the IAM principal); `None` for a job sent to the queue without the library.
    pub owner: Option<Owner>,
    /// When this record was made; with the key, it tells this job from an earlier one under the same id whose
    /// record has expired.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The SQS message id of the delivery that runs or last ran it: the holder of the claim while `running`.
    pub delivery: Option<String>,
    pub placement: Option<Placement>,
    pub progress: Option<Progress>,
    pub cancel_requested: bool,
    /// Why only a GPU may serve the job, as submission routed it (absent without a CPU tier).
    pub gpu_only: Option<String>,
    /// Runs started, and runs handed back cleanly (drain, spot notice): the difference is how many times a
    /// worker died on it.
    pub runs_started: u32,
    pub runs_released: u32,
    pub result: Option<JobResult>,
    /// Whether the final result has been sent to the reply-to queue (a retry of its announcement then sends
    /// only the event: one reply per result).
    pub replied: bool,
    /// Whether the final result has been sent to the reply-to queue and the event bus.
    pub announced: bool,
}

impl JobRecord {
    pub fn key(&self) -> JobKey {
        JobKey::new(self.owner.clone(), &self.job_id)
    }

    /// Names this job among every job its key will ever hold: what its image is tagged with, so that a later
    /// job under a reused id never takes that image for its own.
    pub fn incarnation(&self) -> String {
        format!("{}@{}", self.key().stored(), self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
    }

    /// Runs started and neither answered nor handed back cleanly: the run in progress, if any, counts as one.
    pub fn crashes(&self) -> u32 {
        self.runs_started.saturating_sub(self.runs_released)
    }

    pub fn report(&self) -> JobStatusReport {
        JobStatusReport {
            version: CONTRACT_VERSION,
            job_id: self.job_id.clone(),
            state: self.state,
            submitted_at: self.job.as_ref().map(|j| j.submitted_at),
            updated_at: self.updated_at,
            placement: self.placement.clone(),
            progress: (self.state == JobState::Running).then_some(self.progress).flatten(),
            cancel_requested: self.cancel_requested && !self.state.is_final(),
            gpu_only: self.gpu_only.clone().filter(|_| !self.state.is_final()),
            result: self.result.clone().filter(|_| self.state.is_final()),
        }
    }
}

/// A digest of what a job asks for: the image (prompt, size, steps, guidance, seed, scheduler, model) and where
/// it goes. Submission time, deadline, reply queue and labels are left out, so that a retried submission built
/// anew is still recognised as the same job.
pub fn fingerprint(job: &GenerationJob) -> String {
    let request = serde_json::json!({
        "prompt": job.prompt, "negative_prompt": job.negative_prompt, "width": job.width, "height": job.height,
        "steps": job.steps, "guidance": job.guidance, "seed": job.seed, "scheduler": job.scheduler,
        "model_id": job.model_id, "output": job.output,
    });
    hex::encode(Sha256::digest(request.to_string().as_bytes()))
}

/// The final answer of a job cancelled before any worker took it.
pub fn cancelled_result(job_id: &str, job: Option<&GenerationJob>, now: DateTime<Utc>) -> JobResult {
    JobResult {
        version: CONTRACT_VERSION,
        job_id: job_id.to_string(),
        status: JobStatus::Failed,
        image: None,
        error: Some(JobFailure {
            class: ErrorClass::Cancelled,
            message: "cancelled by request before a worker started it".into(),
        }),
        timings: Timings {
            submitted_at: job.map_or(now, |j| j.submitted_at.min(now)),
            started_at: None,
            finished_at: now,
            queue_wait_ms: None,
            generation_ms: None,
        },
        placement: None,
        tier: None,
        seed: job.and_then(|j| j.seed),
        prompt_truncated: false,
        attempt: 0,
        labels: job.map(|j| j.labels.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gameforge_contract::{Message, S3Uri};

    fn job() -> GenerationJob {
        GenerationJob::new("a-1", "a castle", "sdxl", S3Uri::parse("s3://out/images").unwrap())
    }

    #[test]
    fn the_fingerprint_ignores_when_and_to_whom_but_not_what() {
        let first = job();
        let mut retried = job();
        retried.submitted_at = first.submitted_at + chrono::Duration::seconds(3);
        retried.reply_to = Some("https://sqs.us-east-1.amazonaws.com/1/replies".into());
        retried.labels.insert("asset".into(), "sword".into());
        assert_eq!(fingerprint(&first), fingerprint(&retried));
        let mut other = job();
        other.prompt = "a moat".into();
        assert_ne!(fingerprint(&first), fingerprint(&other));
        let mut elsewhere = job();
        elsewhere.output = S3Uri::parse("s3://out/other").unwrap();
        assert_ne!(fingerprint(&first), fingerprint(&elsewhere));
    }

    #[test]
    fn a_cancelled_result_is_a_valid_final_answer() {
        let mut job = job();
        job.labels.insert("asset".into(), "sword".into());
        let result = cancelled_result("a-1", Some(&job), Utc::now());
        result.validate().unwrap();
        assert_eq!(JobState::of_result(&result), JobState::Cancelled);
        assert_eq!(result.labels["asset"], "sword");
        assert_eq!(result.attempt, 0);
    }

    #[test]
    fn the_report_shows_progress_only_while_running_and_the_result_only_when_final() {
        let mut record = JobRecord {
            job_id: "a-1".into(),
            state: JobState::Running,
            job: Some(job()),
            fingerprint: None,
            owner: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            delivery: Some("m-1".into()),
            placement: None,
            progress: Some(Progress { step: 3, total: 30 }),
            cancel_requested: true,
            gpu_only: None,
            runs_started: 1,
            runs_released: 0,
            result: None,
            replied: false,
            announced: false,
        };
        let report = record.report();
        assert_eq!(report.progress, Some(Progress { step: 3, total: 30 }));
        assert!(report.cancel_requested);
        report.validate().unwrap();
        record.state = JobState::Cancelled;
        record.result = Some(cancelled_result("a-1", record.job.as_ref(), Utc::now()));
        let report = record.report();
        assert_eq!(report.progress, None);
        assert!(!report.cancel_requested);
        report.validate().unwrap();
    }
}
