//! The scenario file: a fleet, a duration, and what the world does meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gameforge_capacity::CapacityEntry;
use gameforge_contract::{GenerationJob, Message, S3Uri};
use gameforge_planner::{FleetConfig, Span};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A path to a fleet configuration (relative to the scenario file), or the configuration inline.
    pub fleet: Value,
    /// Changes to that fleet as a JSON merge patch (RFC 7396), so that a scenario can vary a fleet it shares.
    #[serde(default)]
    pub fleet_patch: Option<Value>,
    pub duration: Span,
    /// The simulation's tick; 10 s unless given.
    #[serde(default = "default_step")]
    pub step: Span,
    /// From launch to serving; 3 minutes unless given.
    #[serde(default = "default_boot")]
    pub boot_time: Span,
    /// From a CPU tier task's start to serving (Fargate's start and the model's load); 4 minutes unless given.
    #[serde(default = "default_cpu_boot")]
    pub cpu_boot_time: Span,
    /// Seeds the backoff jitter, so that a scenario always plays the same.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub capacity: Vec<CapacityEntry>,
    #[serde(default)]
    pub events: Vec<ScenarioEvent>,
    #[serde(default)]
    pub jobs: Option<JobArrivals>,
    /// Regions whose stamp is not ready (no cluster, task definition or model); all are ready otherwise.
    #[serde(default)]
    pub stamps: HashMap<String, StampState>,
    /// Spot placement scores, as `GetSpotPlacementScores` would answer; absent means the API does not answer.
    #[serde(default)]
    pub placement_scores: Option<HashMap<String, u8>>,
}

fn default_step() -> Span {
    Span::seconds(10)
}

fn default_boot() -> Span {
    Span::minutes(3)
}

fn default_cpu_boot() -> Span {
    Span::minutes(4)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampState {
    pub ready: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioEvent {
    pub at: Span,
    /// An EventBridge event file (relative to the scenario file), delivered through the classifier.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Spot interruption warnings for running spot workers of a region (the oldest first).
    #[serde(default)]
    pub interrupt: Option<Interrupt>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interrupt {
    pub region: String,
    /// Only workers in this zone (a flapping capacity pool); any zone of the region when absent.
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobArrivals {
    pub per_minute: f64,
    #[serde(default)]
    pub from: Span,
    #[serde(default)]
    pub until: Option<Span>,
    /// A share of the jobs small enough for the CPU tier; the rest are full-size SDXL jobs. Each is routed at
    /// submission by the same rule the submit function applies.
    #[serde(default)]
    pub small: Option<SmallJobs>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmallJobs {
    /// Between 0 and 1.
    pub share: f64,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("scenario: {0}")]
    Invalid(String),
    #[error(transparent)]
    Fleet(#[from] gameforge_planner::config::ConfigError),
}

/// The longest scenario the virtual clock plays; every instant of a run stays within it (plus one step).
pub const MAX_DURATION: Span = Span(std::time::Duration::from_secs(30 * 86_400));
/// The longest tick, and the longest boot.
pub const MAX_STEP: Span = Span(std::time::Duration::from_secs(86_400));
/// The busiest job arrival rate (jobs a minute) a scenario may ask for.
pub const MAX_JOBS_PER_MINUTE: f64 = 10_000.0;

impl Scenario {
    /// Every value out of the ranges the virtual clock and the job counts can carry, by field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut at_most = |field: String, span: Span, limit: Span| {
            if span > limit {
                problems.push(format!("`{field}` must be at most {limit}"));
            }
        };
        at_most("duration".into(), self.duration, MAX_DURATION);
        at_most("step".into(), self.step, MAX_STEP);
        at_most("boot_time".into(), self.boot_time, MAX_STEP);
        at_most("cpu_boot_time".into(), self.cpu_boot_time, MAX_STEP);
        for (i, event) in self.events.iter().enumerate() {
            at_most(format!("events[{i}].at"), event.at, MAX_DURATION);
        }
        if let Some(jobs) = &self.jobs {
            at_most("jobs.from".into(), jobs.from, MAX_DURATION);
            if let Some(until) = jobs.until {
                at_most("jobs.until".into(), until, MAX_DURATION);
            }
            if !(0.0..=MAX_JOBS_PER_MINUTE).contains(&jobs.per_minute) {
                problems.push(format!("`jobs.per_minute` must be between 0 and {MAX_JOBS_PER_MINUTE}"));
            }
            if let Some(small) = &jobs.small {
                if !(0.0..=1.0).contains(&small.share) {
                    problems.push("`jobs.small.share` must be between 0 and 1".into());
                }
                if let Err(e) = small.job().validate() {
                    problems.push(format!("`jobs.small` is not a valid job: {e}"));
                }
            }
        }
        if self.step.0.is_zero() {
            problems.push("`step` must be positive".into());
        }
        problems
    }
}

/// A scenario with everything it refers to loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    pub fleet: FleetConfig,
    /// Event files, by the scenario's index of the event.
    pub event_files: HashMap<usize, Vec<u8>>,
}

pub fn load(path: &Path) -> Result<Loaded, ScenarioError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| ScenarioError::Read { path: path.to_owned(), reason: e.to_string() })
    };
    let bytes = read(path)?;
    let scenario: Scenario = serde_json::from_slice(&bytes)
        .map_err(|e| ScenarioError::Read { path: path.to_owned(), reason: e.to_string() })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_with_base(scenario, base)
}

pub fn load_with_base(scenario: Scenario, base: &Path) -> Result<Loaded, ScenarioError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| ScenarioError::Read { path: path.to_owned(), reason: e.to_string() })
    };
    let mut fleet = match &scenario.fleet {
        Value::String(relative) => serde_json::from_slice(&read(&base.join(relative))?)
            .map_err(|e| ScenarioError::Read { path: base.join(relative), reason: e.to_string() })?,
        inline @ Value::Object(_) => inline.clone(),
        _ => return Err(ScenarioError::Invalid("`fleet` must be a path or an object".into())),
    };
    if let Some(patch) = &scenario.fleet_patch {
        merge_patch(&mut fleet, patch);
    }
    let fleet = FleetConfig::from_json(fleet.to_string().as_bytes())?;
    let problems = scenario.problems();
    if !problems.is_empty() {
        return Err(ScenarioError::Invalid(problems.join("; ")));
    }
    let mut event_files = HashMap::new();
    for (index, event) in scenario.events.iter().enumerate() {
        match (&event.file, &event.interrupt) {
            (Some(file), None) => {
                event_files.insert(index, read(&base.join(file))?);
            }
            (None, Some(_)) => {}
            _ => {
                return Err(ScenarioError::Invalid(format!(
                    "events[{index}] needs exactly one of `file` and `interrupt`"
                )));
            }
        }
    }
    Ok(Loaded { scenario, fleet, event_files })
}

/// RFC 7396: objects merge key by key, `null` removes a key, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(map) = target {
        for (key, change) in changes {
            if change.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

impl SmallJobs {
    /// A job of this shape, as a game backend would submit it.
    pub fn job(&self) -> GenerationJob {
        let output = S3Uri::parse("s3://gameforge-simulated-images/out/").expect("a valid S3 URI");
        let mut job = GenerationJob::new("small", "a small sprite", "sdxl", output);
        (job.width, job.height, job.steps, job.guidance) = (self.width, self.height, self.steps, self.guidance);
        job
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn a_merge_patch_changes_adds_and_removes_keys_at_any_depth() {
        let mut fleet = json!({"a": {"b": 1, "c": 2}, "d": [1, 2], "e": 3});
        merge_patch(&mut fleet, &json!({"a": {"b": 5, "c": null}, "d": [9], "f": {"g": true}}));
        assert_eq!(fleet, json!({"a": {"b": 5}, "d": [9], "e": 3, "f": {"g": true}}));
    }
}
