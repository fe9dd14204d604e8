//! A generation job's life outside the worker's GPU, and the game backend's client library.
//!
//! The job status store (one DynamoDB item per job id) is the single record of where a job is: the client
//! creates it on submission (which makes a job id idempotent), the worker claims it before running, reports
//! progress into it, reads cancellations from it and writes the final result into it before announcing that
//! result anywhere else. Everything here is usable without candle: the game backend links this crate.
//!
//! Every job has an owner (the IAM principal that submitted it), and job ids are the owner's own ([`JobKey`]):
//! another owner's jobs are out of sight. A job's `reply_to` must be a queue of the deployment ([`reply_to`]).
//!
//! [`Client`] is the library's front door (straight to the queue and the status table, or through the
//! deployment's submit URL with SigV4: [`Client::over_url`]), [`ResultInbox`] reads a reply queue as a stream of results;
//! [`JobStore`], [`JobSender`] and [`ReplyQueues`] are the narrow edges, implemented by [`DynamoJobStore`],
//! [`SqsJobSender`] and [`SqsReplyQueues`].

mod client;
pub mod clients;
mod dynamo;
mod identity;
mod inbox;
mod listing;
mod owner;
mod record;
pub mod reply_to;
mod sender;
mod signing;
mod store;
mod submit;
mod submit_url;

pub use client::{Client, ClientSettings, WaitError};
pub use dynamo::{DynamoJobStore, FINAL_RETENTION_DAYS};
pub use gameforge_aws::PortError;
pub use gameforge_aws::env::SettingsError;
pub use identity::CallerIdentity;
pub use inbox::{Delivered, ResultInbox};
pub use listing::{JobFilter, ListError, OWNER_INDEX};
pub use owner::{InvalidOwner, JobKey, OWNER_ATTRIBUTE, Owner};
pub use record::{JobRecord, cancelled_result, fingerprint};
pub use reply_to::{ReplyQueues, ReplyToError, SqsReplyQueues};
pub use sender::{AnyTier, JobSender, SqsJobSender};
pub use store::{CancelOutcome, Claim, Finish, JobStore, ProgressAnswer};
pub use submit::{SubmitError, Submitted, submit};
pub use submit_url::Defaults;
