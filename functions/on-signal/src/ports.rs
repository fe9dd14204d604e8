//! The narrow edges of the handler: what it needs from storage and queues, nothing more. The AWS adapters
//! live in `aws.rs`; tests substitute in-memory ones.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gameforge_contract::ControlJob;

pub use gameforge_aws::PortError;

/// The outcome of trying to take an event for processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the event until `lease` runs out.
    Claimed,
    /// The event was processed before.
    AlreadyDone,
    /// Another invocation is processing it right now; its lease ends at the given time.
    InFlight { lease_until: DateTime<Utc> },
}

/// Durable, shared record of which events were processed.
pub trait DedupStore: Send + Sync {
    fn claim(
        &self,
        event_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, PortError>> + Send;

    /// Marks the event processed; the record then lives for the store's retention.
    fn complete(
        &self,
        event_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        control_jobs: usize,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Gives up a claim after a failure, so that a retry need not wait for the lease.
    fn release(&self, event_id: &str, owner: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The FIFO control queue.
pub trait ControlSink: Send + Sync {
    fn send(&self, jobs: &[ControlJob]) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The signals queue itself, seen from one of its records.
pub trait SignalQueue: Send + Sync {
    /// Moves a record that can never succeed to the dead-letter queue, with the reason.
    fn dead_letter(
        &self,
        body: &str,
        message_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Keeps a failed record hidden for `delay` before SQS delivers it again.
    fn delay_redelivery(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}
