//! The wire contract of gameforge, version 1.
//!
//! Every message that crosses a process boundary (a generation job, its result, a control job, a classified
//! signal) is defined here, together with its JSON Schema and its validation. This crate knows nothing of AWS,
//! Lambda or candle, so that the game backend, the control plane and the worker can all depend on it.
//!
//! Parsing goes through [`Message::from_json`], which validates against the same JSON Schema that is committed
//! for other languages, so the Rust types and the published schema cannot disagree.

mod control;
mod job;
mod message;
mod result;
mod s3uri;
pub mod schemas;
mod signal;
mod status;

pub use control::{ControlCommand, ControlJob, OperatorAction};
pub use job::{GenerationJob, Scheduler};
pub use message::{ContractError, Message, Violation};
pub use result::{ErrorClass, JobFailure, JobResult, JobStatus, Placement, Tier, Timings};
pub use s3uri::{S3Uri, S3UriError};
pub use signal::{
    CapacityShortage, CapacityType, IgnoreReason, IgnoredEvent, InstanceAction, InterruptionNotice, NoticeKind,
    Offering, ShortageCause, Signal, SignalSource,
};
pub use status::{JobState, JobStatusReport, Progress};

/// The contract version every message of this crate carries in its `version` field.
pub const CONTRACT_VERSION: u32 = 1;
