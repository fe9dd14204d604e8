//! What happened, as it happened: one timestamped line per event printed at the terminal and kept for the
//! report, and the structured facts (instances, job runs, markers, backlog) the chart is drawn from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gameforge_contract::{ControlCommand, ControlJob, Signal};
use serde::Serialize;
use serde_json::Value;

use crate::chart::{Chart, JobBar, Lane, Marker, MarkerKind, RunOutcome};

/// An enum as it reads on the wire (`insufficient_capacity`, `spot`).
pub fn wire<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "?".into())
}

#[derive(Debug, Default)]
struct State {
    lines: Vec<String>,
    lanes: BTreeMap<String, Lane>,
    /// Instance ids in launch order, for the chart's lane order.
    order: Vec<String>,
    markers: Vec<Marker>,
    backlog: Vec<(f64, u32, u32)>,
    /// What was last said about a repeated decision (a service's size, an offering's block), and when: the
    /// executor restates them on every invocation.
    said: std::collections::HashMap<String, (String, f64)>,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    started: Instant,
    quiet: bool,
    state: Arc<Mutex<State>>,
}

/// Where an instance runs, as the chart labels its lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    pub lifecycle: String,
}

impl Timeline {
    pub fn new() -> Self {
        Self { started: Instant::now(), quiet: false, state: Arc::default() }
    }

    /// A timeline that keeps everything but prints nothing (the reliability run prints its own summary).
    pub fn quiet() -> Self {
        Self { quiet: true, ..Self::new() }
    }

    pub fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One line from `who` (`story`, `signals`, `executor`, an instance id…).
    pub fn line(&self, who: &str, text: impl AsRef<str>) {
        let line = format!("[{:>7.2}s] {who:<19} {}", self.now_s(), text.as_ref());
        if !self.quiet {
            println!("{line}");
        }
        self.state().lines.push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.state().lines.clone()
    }

    pub fn marker(&self, kind: MarkerKind, label: impl Into<String>) {
        let at_s = self.now_s();
        self.state().markers.push(Marker { at_s, kind, label: label.into() });
    }

    pub fn backlog(&self, queued: u32, in_flight: u32) {
        let at = self.now_s();
        self.state().backlog.push((at, queued, in_flight));
    }

    pub fn launched(&self, info: &InstanceInfo) {
        let at = self.now_s();
        let mut state = self.state();
        state.order.push(info.instance_id.clone());
        state.lanes.insert(
            info.instance_id.clone(),
            Lane {
                instance_id: info.instance_id.clone(),
                region: info.region.clone(),
                zone: info.zone.clone(),
                instance_type: info.instance_type.clone(),
                lifecycle: info.lifecycle.clone(),
                launched_s: at,
                ended_s: None,
                draining_s: None,
                notice_s: None,
                jobs: Vec::new(),
            },
        );
    }

    fn with_lane(&self, instance_id: &str, change: impl FnOnce(&mut Lane, f64)) {
        let at = self.now_s();
        if let Some(lane) = self.state().lanes.get_mut(instance_id) {
            change(lane, at);
        }
    }

    pub fn draining(&self, instance_id: &str) {
        self.with_lane(instance_id, |lane, at| {
            lane.draining_s.get_or_insert(at);
        });
    }

    pub fn noticed(&self, instance_id: &str) {
        self.with_lane(instance_id, |lane, at| {
            lane.notice_s.get_or_insert(at);
        });
    }

    /// The instance is gone; a run still open on it was lost with it.
    pub fn ended(&self, instance_id: &str) {
        self.with_lane(instance_id, |lane, at| {
            lane.ended_s.get_or_insert(at);
            for job in lane.jobs.iter_mut().filter(|j| j.outcome == RunOutcome::Running) {
                job.end_s = at;
                job.outcome = RunOutcome::Lost;
            }
        });
    }

    pub fn job_started(&self, instance_id: &str, job_id: &str) {
        self.with_lane(instance_id, |lane, at| {
            lane.jobs.push(JobBar { job_id: job_id.into(), start_s: at, end_s: at, outcome: RunOutcome::Running });
        });
    }

    /// Closes the open run of `job_id` on the instance (every open run where the worker died: `job_id` `None`).
    pub fn job_ended(&self, instance_id: &str, job_id: Option<&str>, outcome: RunOutcome) {
        self.with_lane(instance_id, |lane, at| {
            for job in lane.jobs.iter_mut().filter(|j| j.outcome == RunOutcome::Running) {
                if job_id.is_none_or(|id| id == job.job_id) {
                    job.end_s = at;
                    job.outcome = outcome;
                }
            }
        });
    }

    pub fn chart(&self, title: &str) -> Chart {
        let duration_s = self.now_s();
        let state = self.state();
        let lanes = state
            .order
            .iter()
            .filter_map(|id| state.lanes.get(id).cloned())
            .map(|mut lane| {
                for job in lane.jobs.iter_mut().filter(|j| j.outcome == RunOutcome::Running) {
                    job.end_s = duration_s;
                }
                lane
            })
            .collect();
        Chart { title: title.into(), duration_s, lanes, markers: state.markers.clone(), backlog: state.backlog.clone() }
    }

    pub fn signal(&self, source: &str, detail_type: &str, signal: &Signal) {
        let what = match signal {
            Signal::CapacityUnavailable(s) => format!(
                "capacity_unavailable {} in {} ({}), cause {}, from {}{}{}",
                s.instance_type.as_deref().unwrap_or("<type unknown>"),
                s.availability_zone.as_deref().unwrap_or(&s.region),
                s.capacity_type.map(|c| wire(&c)).unwrap_or_else(|| "capacity type unknown".into()),
                wire(&s.cause),
                wire(&s.source),
                if s.other_offerings.is_empty() {
                    String::new()
                } else {
                    format!(" (+{} more offering(s))", s.other_offerings.len())
                },
                if s.available_zones.is_empty() {
                    String::new()
                } else {
                    format!(", still available in {}", s.available_zones.join(", "))
                },
            ),
            Signal::Interruption(n) => format!(
                "interruption {} of {}{}",
                wire(&n.notice),
                n.instance_id.as_deref().unwrap_or("<instance unknown>"),
                n.deadline.map(|d| format!(", gone by {}", d.format("%H:%M:%SZ"))).unwrap_or_default(),
            ),
            Signal::Ignored(i) => format!(
                "ignored ({}{})",
                wire(&i.reason),
                i.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
        };
        self.line("signals", format!("{source} / {detail_type} → signal {what}"));
    }

    pub fn control_job(&self, job: &ControlJob) {
        let what = match &job.command {
            ControlCommand::RecordCapacityFailure { shortage } => format!(
                "record_capacity_failure {} {}",
                shortage.instance_type.as_deref().unwrap_or("?"),
                shortage.availability_zone.as_deref().unwrap_or(&shortage.region)
            ),
            ControlCommand::HandleInterruption { notice } => {
                format!("handle_interruption {}", notice.instance_id.as_deref().unwrap_or("?"))
            }
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "control job".into()),
        };
        self.line("signals", format!("→ control {what}  [{} → fleet {}]", job.control_id, job.fleet));
    }

    /// One of the executor's journal entries, if it changed something or explains a change. Returns the
    /// entry's kind.
    pub fn decision(&self, entry: &Value) -> Option<String> {
        let kind = entry["event"].as_str()?.to_owned();
        let s = |key: &str| entry[key].as_str().unwrap_or("?").to_owned();
        let offering = |v: &Value| {
            format!(
                "{} {} {}",
                v["instance_type"].as_str().unwrap_or("?"),
                v["availability_zone"].as_str().unwrap_or("?"),
                v["capacity_type"].as_str().unwrap_or("?")
            )
        };
        let text = match kind.as_str() {
            "service_size" | "cpu_service_size" | "blocked" if self.restated(&kind, entry) => return Some(kind),
            "scale" if entry["desired"] != entry["current"] => format!(
                "scale {} → {} workers ({} queued, {} in flight)",
                entry["current"], entry["desired"], entry["demand"]["queued"], entry["demand"]["in_flight"]
            ),
            "blocked" => {
                format!("blocked {} ({}) until {}", offering(&entry["offering"]), s("cause"), clock(&s("until")))
            }
            "quota_blocked" => format!("quota block {} ({})", s("bucket"), s("error_code")),
            "interruption" => format!("interruption {} of {} in {}", s("notice"), s("instance_id"), s("region")),
            "launch" => format!(
                "launch {} × {} in {} ({} offerings on the ladder)",
                entry["count"],
                s("capacity_type"),
                s("region"),
                entry["overrides"]
            ),
            "launched" => {
                let instances: Vec<&str> =
                    entry["instances"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let failures = entry["failures"].as_array().map_or(0, Vec::len);
                if failures > 0 {
                    self.marker(MarkerKind::LaunchFailed, format!("{failures} short in {}", s("region")));
                }
                if !instances.is_empty() || failures > 0 {
                    format!(
                        "launched [{}] in {}{}",
                        instances.join(", "),
                        s("region"),
                        if failures > 0 { format!("; {failures} offering(s) had no capacity") } else { String::new() }
                    )
                } else {
                    return Some(kind);
                }
            }
            "launch_failed" => format!("launch failed in {}: {}", s("region"), s("reason")),
            "migrate" => {
                let label = format!("{} → {}", s("from"), s("to"));
                self.marker(MarkerKind::Migration, format!("{label} ({})", reason(&entry["reason"])));
                format!("MIGRATE {label} ({})", reason(&entry["reason"]))
            }
            "no_target" => format!("no region to move to from {}", s("from")),
            "return_home_probe" => format!("capacity may be back: probing {}", s("home")),
            "drain" => format!("drain {} in {} ({})", s("instance_id"), s("region"), s("why")),
            "terminate" => format!(
                "terminate [{}] in {}",
                entry["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                s("region")
            ),
            "service_size" => format!("ECS service in {} → {} task(s)", s("region"), entry["count"]),
            "cpu_tier"
                if !entry["entered"].is_null() || !entry["left"].is_null() || entry["desired"] != entry["current"] =>
            {
                let change = match (entry["entered"].as_str(), entry["left"].as_str()) {
                    (Some(why), _) => format!("CPU TIER ON ({}): ", why.replace('_', " ")),
                    (_, Some(why)) => format!("CPU TIER OFF ({}): ", why.replace('_', " ")),
                    _ => String::new(),
                };
                format!(
                    "{change}CPU workers {} → {} ({} eligible queued, {} in flight)",
                    entry["current"], entry["desired"], entry["eligible"]["queued"], entry["eligible"]["in_flight"]
                )
            }
            "cpu_service_size" => format!("CPU tier's ECS service in {} → {} task(s)", s("region"), entry["count"]),
            "retry" => format!("retry round {} in {:.1} s", entry["round"], entry["delay_s"].as_f64().unwrap_or(0.0)),
            "alert" => format!("ALERT {}: {}", s("kind"), s("message")),
            "skipped" => format!("skip {} in {} ({})", s("capacity_type"), s("region"), reason(&entry["why"])),
            _ => return Some(kind),
        };
        self.line("executor", text);
        Some(kind)
    }
}

impl Timeline {
    /// Whether a decision only restates what was said lately: the same size for a service, or a block of the
    /// same offering within the last ten seconds.
    fn restated(&self, kind: &str, entry: &Value) -> bool {
        let (key, value) = match kind {
            "service_size" | "cpu_service_size" => (format!("{kind}/{}", entry["region"]), entry["count"].to_string()),
            _ => (format!("blocked/{}", entry["offering"]), String::new()),
        };
        let now = self.now_s();
        let mut state = self.state();
        let restated =
            state.said.get(&key).is_some_and(|(said, at)| *said == value && (kind != "blocked" || now - at < 10.0));
        if !restated {
            state.said.insert(key, (value, now));
        }
        restated
    }
}

fn clock(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default()
}

/// A tagged enum as the journal writes it (a migration's reason, a skip's why): a string, or an object whose tag names the variant.
fn reason(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| Value::Object(map.clone()).to_string()),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
