use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::{Message, Violation};
use crate::{ErrorClass, JobResult, JobStatus, Placement};

/// Where a job is in its life, as the job status store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Recorded, not yet confirmed on the job queue.
    Submitted,
    /// On the job queue, waiting for a worker.
    Queued,
    /// A worker is generating it.
    Running,
    Succeeded,
    Failed,
    Rejected,
    /// Cancelled on request: before a worker started it, or between two steps.
    Cancelled,
}

impl JobState {
    /// Whether the job has its one final result.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Rejected | Self::Cancelled)
    }

    /// The state a final result puts a job in.
    pub fn of_result(result: &JobResult) -> Self {
        match result.status {
            JobStatus::Succeeded => Self::Succeeded,
            JobStatus::Rejected => Self::Rejected,
            JobStatus::Failed if result.error.as_ref().is_some_and(|e| e.class == ErrorClass::Cancelled) => {
                Self::Cancelled
            }
            JobStatus::Failed => Self::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Submitted, Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Rejected, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Steps done of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub step: u32,
    #[schemars(range(min = 1))]
    pub total: u32,
}

/// What the status store knows of one job: the answer of `gameforge jobs status` and of the submit endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "JobStatusReport", description = "The state of one generation job (contract version 1).")]
pub struct JobStatusReport {
    #[schemars(extend("const" = 1))]
    pub version: u32,
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"))]
    pub job_id: String,
    pub state: JobState,
    /// Absent for a job that reached a worker without going through the client (a plain `SendMessage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Where it runs or ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// A cancellation was asked for while the job ran; the worker stops it at its next step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Why only a GPU may serve this job, in a deployment with a CPU tier (over the tier's budget, or a deadline
    /// a CPU would miss): while no GPU can be had anywhere, the job waits for one. Absent once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_only: Option<String>,
    /// The final result, present exactly when the state is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
}

impl Message for JobStatusReport {
    const SCHEMA_NAME: &'static str = "job-status";

    fn semantic_violations(&self) -> Vec<Violation> {
        let mut violations = Vec::new();
        match (&self.result, self.state.is_final()) {
            (None, true) => violations.push(Violation::new("result", "is required when the state is final")),
            (Some(_), false) => violations.push(Violation::new("result", "must be absent until the state is final")),
            (Some(result), true) if JobState::of_result(result) != self.state => {
                violations.push(Violation::new("state", "must agree with result.status"))
            }
            _ => {}
        }
        violations
    }
}
