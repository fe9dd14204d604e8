//! What the run prints: one timestamped line per thing that happened, readable at a terminal.

use std::time::Instant;

use gameforge_contract::{ControlCommand, ControlJob, Signal};
use serde::Serialize;

/// An enum as it reads on the wire (`insufficient_capacity`, `spot`).
fn wire<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "?".into())
}

#[derive(Debug, Clone)]
pub struct Report {
    started: Instant,
}

impl Report {
    pub fn new() -> Self {
        Self { started: Instant::now() }
    }

    pub fn line(&self, text: impl AsRef<str>) {
        println!("[{:>7.2}s] {}", self.started.elapsed().as_secs_f64(), text.as_ref());
    }

    pub fn signal(&self, source: &str, detail_type: &str, signal: &Signal) {
        let what = match signal {
            Signal::CapacityUnavailable(s) => format!(
                "capacity_unavailable {} in {} ({}), cause {}, from {}{}",
                s.instance_type.as_deref().unwrap_or("<type unknown>"),
                s.availability_zone.as_deref().unwrap_or(&s.region),
                s.capacity_type.map(|c| wire(&c)).unwrap_or_else(|| "capacity type unknown".into()),
                wire(&s.cause),
                wire(&s.source),
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
        self.line(format!("signal   {source} / {detail_type}\n           → {what}"));
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
        self.line(format!("control  {what}  [{} → fleet {}]", job.control_id, job.fleet));
    }
}
