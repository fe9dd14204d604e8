use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::{Message, Violation};
use crate::{CapacityShortage, InterruptionNotice};

/// A unit of work for the control plane, carried on the FIFO control queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ControlJob", description = "A control-plane job on the FIFO control queue (contract version 1).")]
pub struct ControlJob {
    #[schemars(extend("const" = 1))]
    pub version: u32,
    /// Stable for the same cause, so that a redelivered cause yields the same id; it is also the FIFO
    /// deduplication id.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_\-:.]{1,128}$"))]
    pub control_id: String,
    /// The worker fleet concerned; control jobs of one fleet are processed in order.
    #[schemars(length(min = 1, max = 128))]
    pub fleet: String,
    pub emitted_at: DateTime<Utc>,
    pub command: ControlCommand,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlCommand {
    /// Put one failed offering in the ledger and re-plan capacity if the fleet is short.
    RecordCapacityFailure { shortage: CapacityShortage },
    /// One instance is going away: mark its offering, drain it, replace it.
    HandleInterruption { notice: InterruptionNotice },
    /// Bring the fleet to its desired size now. `round` counts acquisition rounds that fell short, for the backoff
    /// between them; `clear_errors` lifts a stop caused by a configuration error (an operator fixed it).
    AcquireCapacity {
        round: u32,
        #[serde(default)]
        clear_errors: bool,
        reason: String,
    },
    /// Recompute the desired size from the job backlog and converge (sent every minute by a schedule).
    Reconcile,
    /// Move the fleet to `to`, or to the best ready region when absent.
    Migrate {
        #[serde(default)]
        to: Option<String>,
        reason: String,
    },
    /// Take one instance out of service; it is replaced if the fleet needs it.
    DrainInstance { instance_id: String, region: String },
    /// An operator's instruction (`gameforge fleet pause|resume|pin|unpin|unblock`): kept in the fleet's state and
    /// honoured until undone. `by` says who, for the journal.
    Operate {
        #[schemars(length(min = 1, max = 256))]
        by: String,
        action: OperatorAction,
    },
}

/// What an operator asks of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorAction {
    /// Stop launching until resumed; draining, scaling in and terminating go on.
    Pause {
        #[schemars(length(max = 512))]
        reason: String,
    },
    /// Launch again: lifts a pause and a stop for a configuration error.
    Resume,
    /// Keep the fleet in `region`: it moves there now and never leaves on its own, nor returns home.
    Pin { region: String },
    /// Let the fleet move on its own again.
    Unpin,
    /// Put back into placement what the ledger keeps out: every block whose key (`region/zone/type/capacity` for
    /// an offering, `region/capacity/family` for a quota bucket) starts with `pattern`'s parts, `*` matching any
    /// one part (`us-east-1` is the whole region, `*/*/g5.xlarge` one type everywhere).
    Unblock {
        #[schemars(length(min = 1, max = 256))]
        pattern: String,
    },
}

impl ControlCommand {
    /// The command's wire name: its `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlCommand::RecordCapacityFailure { .. } => "record_capacity_failure",
            ControlCommand::HandleInterruption { .. } => "handle_interruption",
            ControlCommand::AcquireCapacity { .. } => "acquire_capacity",
            ControlCommand::Reconcile => "reconcile",
            ControlCommand::Migrate { .. } => "migrate",
            ControlCommand::DrainInstance { .. } => "drain_instance",
            ControlCommand::Operate { .. } => "operate",
        }
    }
}

impl Message for ControlJob {
    const SCHEMA_NAME: &'static str = "control-job";

    fn semantic_violations(&self) -> Vec<Violation> {
        match &self.command {
            ControlCommand::RecordCapacityFailure { shortage } if !shortage.other_offerings.is_empty() => {
                vec![Violation::new("command.shortage.other_offerings", "a control job carries one offering")]
            }
            ControlCommand::HandleInterruption { notice } if !notice.other_instance_ids.is_empty() => {
                vec![Violation::new("command.notice.other_instance_ids", "a control job carries one instance")]
            }
            _ => Vec::new(),
        }
    }
}
