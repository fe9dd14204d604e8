//! The service's edges, one narrow trait each; `aws.rs` implements them with SQS, S3 and EventBridge. The job
//! status store's trait is `gameforge_jobs::JobStore`.

use std::future::Future;
use std::time::Duration;

pub use gameforge_aws::PortError;
use gameforge_contract::{JobResult, S3Uri};

use super::decide::Delivery;

/// The job queue.
pub trait JobQueue: Send + Sync + 'static {
    /// Long-polls for one message.
    fn receive(&self, wait: Duration) -> impl Future<Output = Result<Option<Delivery>, PortError>> + Send;
    /// Hides the message for `visibility` from now: a heartbeat while it runs, or 0 to hand it back at once.
    fn set_visibility(&self, receipt: &str, visibility: Duration)
    -> impl Future<Output = Result<(), PortError>> + Send;
    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Moves the message to the dead-letter queue with the reason, then deletes it.
    fn dead_letter(&self, delivery: &Delivery, reason: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Sends the delivery's job to this queue as a new message, with its owner.
    fn send(&self, delivery: &Delivery) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// What became of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Written,
    /// Another job's image is there (an id reused after its record expired); it stays.
    Taken,
}

/// Where images are kept. An image is never overwritten by another job's.
pub trait ObjectStore: Send + Sync + 'static {
    /// Writes the image of the job `incarnation` names (`JobRecord::incarnation`): where nothing is, or over an
    /// earlier run of the same job (a run that stored its image and then failed), never over another job's.
    fn put(
        &self,
        location: &S3Uri,
        bytes: Vec<u8>,
        content_type: &str,
        incarnation: &str,
    ) -> impl Future<Output = Result<Stored, PortError>> + Send;
}

/// What became of a result's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// To the reply queue, or there is none.
    Delivered,
    /// The reply queue refuses for good (gone, or not ours to send to): the job is not announced, and its
    /// message is set aside with this reason.
    ReplyRefused(String),
}

/// Who hears about a job: its reply-to queue and the event bus.
pub trait Announcer: Send + Sync + 'static {
    /// Sends the result to its reply queue, if it has one.
    fn reply(
        &self,
        result: &JobResult,
        reply_to: Option<&str>,
    ) -> impl Future<Output = Result<Announcement, PortError>> + Send;
    /// Publishes the result's final event on the bus.
    fn result_event(&self, result: &JobResult) -> impl Future<Output = Result<(), PortError>> + Send;
    fn progress(&self, job_id: &str, step: usize, total: usize) -> impl Future<Output = Result<(), PortError>> + Send;
}
