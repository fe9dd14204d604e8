//! What the executor decided and did, one record each: logged as JSON by the Lambda function, printed as JSON
//! lines by the simulator, and inspected by the tests.

use chrono::{DateTime, Utc};
use gameforge_contract::CapacityType;
use gameforge_planner::Offering;
use gameforge_planner::ladder::Skip;
use gameforge_planner::placement::{MigrationReason, Unsuitable};
use gameforge_planner::scaling::Demand;
use serde::Serialize;

use crate::ports::{AlertKind, LaunchFailure};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The control job that started this invocation.
    Job {
        control_id: String,
        command: String,
    },
    Scale {
        demand: Demand,
        current: u32,
        desired: u32,
    },
    Blocked {
        offering: Offering,
        cause: String,
        until: DateTime<Utc>,
    },
    QuotaBlocked {
        bucket: String,
        error_code: String,
        until: DateTime<Utc>,
    },
    Interruption {
        instance_id: String,
        region: String,
        notice: String,
        ours: bool,
    },
    Skipped {
        region: String,
        capacity_type: CapacityType,
        why: Skip,
    },
    Launch {
        region: String,
        capacity_type: CapacityType,
        count: u32,
        overrides: usize,
        client_token: String,
    },
    Launched {
        region: String,
        instances: Vec<String>,
        failures: Vec<LaunchFailure>,
    },
    LaunchFailed {
        region: String,
        reason: String,
    },
    Migrate {
        from: String,
        to: String,
        reason: MigrationReason,
    },
    NoTarget {
        from: String,
        rejected: Vec<(String, Unsuitable)>,
    },
    ReturnHomeProbe {
        home: String,
    },
    Drain {
        instance_id: String,
        region: String,
        why: String,
    },
    Terminate {
        region: String,
        instances: Vec<String>,
    },
    ServiceSize {
        region: String,
        count: u32,
    },
    Waiting {
        until: DateTime<Utc>,
        why: String,
    },
    Retry {
        round: u32,
        delay_s: f64,
    },
    Alert {
        kind: AlertKind,
        message: String,
    },
    Satisfied {
        region: String,
        workers: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Journal {
    pub entries: Vec<Entry>,
}

impl Journal {
    pub fn push(&mut self, at: DateTime<Utc>, event: Event) {
        self.entries.push(Entry { at, event });
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.entries.iter().map(|e| &e.event)
    }
}
