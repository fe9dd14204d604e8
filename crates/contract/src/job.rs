use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::{Message, Violation};
use crate::{CONTRACT_VERSION, S3Uri};

/// A request to generate one image. Sent by the game backend to the job queue; read by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "GenerationJob", description = "A request to generate one image with SDXL (contract version 1).")]
pub struct GenerationJob {
    /// Contract version; always 1.
    #[schemars(extend("const" = 1))]
    pub version: u32,
    /// Chosen by the client and unique per image: resubmitting the same id never makes a second image, and the
    /// image key in S3 is derived from it.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"))]
    pub job_id: String,
    #[schemars(length(min = 1, max = 4000))]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4000))]
    pub negative_prompt: Option<String>,
    /// Pixels; the reference pipeline requires a multiple of 8.
    #[serde(default = "default_side")]
    #[schemars(range(min = 64, max = 2048), extend("multipleOf" = 8))]
    pub width: u32,
    #[serde(default = "default_side")]
    #[schemars(range(min = 64, max = 2048), extend("multipleOf" = 8))]
    pub height: u32,
    /// Denoising steps; SDXL-Turbo uses 1 to 4.
    #[serde(default = "default_steps")]
    #[schemars(range(min = 1, max = 150))]
    pub steps: u32,
    /// Classifier-free guidance scale; 1 or less turns guidance (and the negative prompt) off.
    #[serde(default = "default_guidance")]
    #[schemars(range(min = 0.0, max = 30.0))]
    pub guidance: f64,
    /// The initial noise seed. Limited to 2^53 - 1 so that every JSON implementation carries it exactly; a
    /// worker picks one when absent and reports it in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9_007_199_254_740_991_u64))]
    pub seed: Option<u64>,
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Which model the worker must run (a name the fleet is configured with, a Hub repo id or an S3 URI).
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^\S+$"))]
    pub model_id: String,
    /// Where the image goes: the PNG is written to `<output>/<job_id>.png`.
    pub output: S3Uri,
    /// An SQS queue URL that receives the `JobResult`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^https?://\S+$"))]
    pub reply_to: Option<String>,
    pub submitted_at: DateTime<Utc>,
    /// After this instant the job is worthless: a worker reports it failed instead of running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Free-form labels, echoed back in the result (an asset id, a player id).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "propertyNames" = {"minLength": 1, "maxLength": 64}, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    pub labels: BTreeMap<String, String>,
}

/// The denoising schedulers a worker implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    /// Euler discrete, SDXL's default.
    #[default]
    Euler,
    /// Euler ancestral.
    EulerA,
    Ddim,
}

fn default_side() -> u32 {
    1024
}

fn default_steps() -> u32 {
    30
}

fn default_guidance() -> f64 {
    5.0
}

impl GenerationJob {
    /// A job with the defaults SDXL base is tuned for (1024 × 1024, 30 Euler steps, guidance 5).
    pub fn new(
        job_id: impl Into<String>,
        prompt: impl Into<String>,
        model_id: impl Into<String>,
        output: S3Uri,
    ) -> Self {
        Self {
            version: CONTRACT_VERSION,
            job_id: job_id.into(),
            prompt: prompt.into(),
            negative_prompt: None,
            width: default_side(),
            height: default_side(),
            steps: default_steps(),
            guidance: default_guidance(),
            seed: None,
            scheduler: Scheduler::default(),
            model_id: model_id.into(),
            output,
            reply_to: None,
            submitted_at: Utc::now(),
            deadline: None,
            labels: BTreeMap::new(),
        }
    }

    /// Where the worker writes this job's image. A redelivered job writes the same key.
    pub fn image_location(&self) -> S3Uri {
        self.output.join(&format!("{}.png", self.job_id))
    }

    /// Whether classifier-free guidance runs (and the negative prompt matters), as the reference pipeline decides.
    pub fn uses_guidance(&self) -> bool {
        self.guidance > 1.0
    }
}

impl Message for GenerationJob {
    const SCHEMA_NAME: &'static str = "generation-job";

    fn semantic_violations(&self) -> Vec<Violation> {
        let mut violations = Vec::new();
        if let Some(deadline) = self.deadline
            && deadline <= self.submitted_at
        {
            violations.push(Violation::new("deadline", "must be later than submitted_at"));
        }
        if self.prompt.trim().is_empty() {
            violations.push(Violation::new("prompt", "must contain more than whitespace"));
        }
        if !self.guidance.is_finite() {
            violations.push(Violation::new("guidance", "must be a finite number"));
        }
        violations
    }
}
