//! A generation job's life outside the worker's GPU, and the game backend's client library.
//!
//! The job status store (one DynamoDB item per job id) is the single record of where a job is: the client
//! creates it on submission (which makes a job id idempotent), the worker claims it before running, reports
//! progress into it, reads cancellations from it and writes the final result into it before announcing that
//! result anywhere else. Everything here is usable without candle: the game backend links this crate.
//!
//! [`Client`] is the library's front door, [`ResultInbox`] reads a reply queue as a stream of results; [`JobStore`] and [`JobSender`] are the narrow edges, implemented
//! by [`DynamoJobStore`] and [`SqsJobSender`].

mod client;
pub mod clients;
mod dynamo;
mod inbox;
mod record;
mod sender;
mod store;
mod submit;

pub use client::{Client, ClientSettings, WaitError};
pub use dynamo::{DynamoJobStore, FINAL_RETENTION_DAYS};
pub use gameforge_aws::PortError;
pub use gameforge_aws::env::SettingsError;
pub use inbox::{Delivered, ResultInbox};
pub use record::{JobRecord, cancelled_result, fingerprint};
pub use sender::{JobSender, SqsJobSender};
pub use store::{CancelOutcome, Claim, Finish, JobStore, ProgressAnswer};
pub use submit::{SubmitError, Submitted, submit};
