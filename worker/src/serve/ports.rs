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
}

/// Where images are kept.
pub trait ObjectStore: Send + Sync + 'static {
    fn put(
        &self,
        location: &S3Uri,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Who hears about a job: its reply-to queue and the event bus.
pub trait Announcer: Send + Sync + 'static {
    fn result(&self, result: &JobResult, reply_to: Option<&str>) -> impl Future<Output = Result<(), PortError>> + Send;
    fn progress(&self, job_id: &str, step: usize, total: usize) -> impl Future<Output = Result<(), PortError>> + Send;
}
