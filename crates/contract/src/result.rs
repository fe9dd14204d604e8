use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::{Message, Violation};
use crate::{CapacityType, S3Uri};

/// The one final answer to a `GenerationJob`, sent to its reply-to queue and published as an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "JobResult", description = "The final outcome of one generation job (contract version 1).")]
pub struct JobResult {
    #[schemars(extend("const" = 1))]
    pub version: u32,
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"))]
    pub job_id: String,
    pub status: JobStatus,
    /// The PNG, present exactly when the job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<S3Uri>,
    /// Why the job did not succeed, present exactly when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobFailure>,
    pub timings: Timings,
    /// Where the job ran; absent when it was rejected before reaching a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The kind of worker that answered; absent when no worker did (a job cancelled while queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// The seed the image was generated from (the job's, or the one the worker picked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9_007_199_254_740_991_u64))]
    pub seed: Option<u64>,
    /// The prompt was longer than the text encoder's 77 tokens and was cut, as the reference pipeline does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prompt_truncated: bool,
    /// How many times the job was delivered to a worker, this delivery included; 0 for a job cancelled
    /// before any worker took it.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Succeeded,
    /// The job was valid but could not be completed; `error.class` says why.
    Failed,
    /// The job itself was invalid and will never be retried.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobFailure {
    pub class: ErrorClass,
    #[schemars(length(max = 4096))]
    pub message: String,
}

/// The kind of worker that serves a job: the GPU fleet, or the CPU fallback tier while no GPU can be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Gpu,
    Cpu,
}

/// Stable error classes a client can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The job failed validation (with `rejected`).
    InvalidJob,
    /// The worker does not serve the requested model.
    UnsupportedModel,
    ModelLoad,
    OutOfMemory,
    Generation,
    /// The image could not be written.
    Storage,
    DeadlineExceeded,
    Cancelled,
    /// The job crashed workers until it reached the dead-letter queue.
    Poison,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    pub submitted_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// From submission to the model starting on this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<u64>,
    /// Time spent in the diffusion pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[schemars(length(min = 1))]
    pub region: String,
    #[schemars(length(min = 1))]
    pub availability_zone: String,
    #[schemars(length(min = 1))]
    pub instance_type: String,
    pub capacity_type: CapacityType,
    #[schemars(length(min = 1))]
    pub instance_id: String,
}

impl Message for JobResult {
    const SCHEMA_NAME: &'static str = "job-result";

    fn semantic_violations(&self) -> Vec<Violation> {
        let mut violations = Vec::new();
        match self.status {
            JobStatus::Succeeded => {
                if self.image.is_none() {
                    violations.push(Violation::new("image", "is required when status is succeeded"));
                }
                if self.error.is_some() {
                    violations.push(Violation::new("error", "must be absent when status is succeeded"));
                }
            }
            JobStatus::Failed | JobStatus::Rejected => {
                if self.error.is_none() {
                    violations.push(Violation::new("error", "is required when status is failed or rejected"));
                }
                if self.image.is_some() {
                    violations.push(Violation::new("image", "must be absent unless status is succeeded"));
                }
            }
        }
        if self.timings.finished_at < self.timings.submitted_at {
            violations.push(Violation::new("timings.finished_at", "must not be before timings.submitted_at"));
        }
        if let Some(started) = self.timings.started_at
            && (started < self.timings.submitted_at || started > self.timings.finished_at)
        {
            violations.push(Violation::new("timings.started_at", "must lie between submitted_at and finished_at"));
        }
        violations
    }
}
