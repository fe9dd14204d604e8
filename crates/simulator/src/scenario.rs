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
    if scenario.step.0.is_zero() {
        return Err(ScenarioError::Invalid("`step` must be positive".into()));
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
