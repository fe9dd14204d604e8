//! The scenario file: a fleet, a duration, and what the world does meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gameforge_capacity::CapacityEntry;
use gameforge_planner::{FleetConfig, Span};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A path to a fleet configuration (relative to the scenario file), or the configuration inline.
    pub fleet: Value,
    pub duration: Span,
    /// The simulation's tick; 10 s unless given.
    #[serde(default = "default_step")]
    pub step: Span,
    /// From launch to serving; 3 minutes unless given.
    #[serde(default = "default_boot")]
    pub boot_time: Span,
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
    let fleet = match &scenario.fleet {
        Value::String(relative) => FleetConfig::from_json(&read(&base.join(relative))?)?,
        inline @ Value::Object(_) => FleetConfig::from_json(inline.to_string().as_bytes())?,
        _ => return Err(ScenarioError::Invalid("`fleet` must be a path or an object".into())),
    };
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
