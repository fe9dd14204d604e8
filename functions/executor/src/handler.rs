//! The Lambda entry point: SQS batches from the FIFO control queue and the retry queue, or a scheduled event
//! delivered directly. Records of a FIFO batch are handled in order; at the first one that cannot be handled now,
//! it and every record after it are reported failed, so that the fleet's jobs keep their order, and hidden only
//! as long as their cause needs: seconds for a fleet busy with another invocation, a backoff that grows with
//! the receive count for AWS failures (so that the queue's `maxReceiveCount` bounds an outage ridden out, not a
//! number of quick retries).

use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use gameforge_aws::backoff::Backoff;
use gameforge_aws::dead_letter::DeadLetter;
use gameforge_aws::invocation::Deadline;
use gameforge_aws::metrics::Metrics;
use gameforge_aws::sqs_batch::{Payload, SqsBatchResponse, SqsMessage, SqsRecordExt};
use gameforge_contract::{CONTRACT_VERSION, ControlCommand, ControlJob, Message};
use serde_json::{Value, json};

use gameforge_engine::engine::{Executor, Handled};
use gameforge_engine::journal::Tally;
use gameforge_engine::ports::{PortError, World};

/// What the handler does with the queues its records come from.
pub trait ControlQueues: Send + Sync {
    /// Sends a control job that can never be handled to the dead-letter queue, with the reason.
    fn dead_letter(
        &self,
        body: &str,
        message_id: &str,
        reason: &str,
    ) -> impl std::future::Future<Output = Result<(), PortError>> + Send;

    /// Keeps a failed record hidden for `delay` before its next delivery.
    fn delay_redelivery(
        &self,
        record: &SqsMessage,
        delay: Duration,
    ) -> impl std::future::Future<Output = Result<(), PortError>> + Send;
}

/// While the fleet is busy, the invocation waits for it as long as this much of its time is left for the work.
pub const WORK_RESERVE: Duration = Duration::from_secs(8);
/// A fleet is busy for the few seconds another invocation converges it; a job that found it busy and could not
/// wait comes back within seconds, not after the queue's visibility timeout.
pub const BUSY_REDELIVERY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
/// AWS failures: 2 s doubling to 2 min, by receive count.
pub const TRANSIENT_REDELIVERY: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(120));

#[derive(Debug)]
pub struct ControlHandler<W, Q> {
    executor: Executor<W>,
    queues: Q,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("not a control job: {0}")]
    Malformed(String),
    #[error("the fleet is busy until {0}")]
    Busy(chrono::DateTime<chrono::Utc>),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The `detail-type` of the event a schedule rule sends.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// A control job from a message body: a control job, or the scheduled event that asks for a reconcile (a
/// schedule's constant input is not always delivered, so its envelope is understood too).
pub fn parse_job(body: &str, fleet: &str) -> Result<ControlJob, HandlerError> {
    let value: Value = serde_json::from_str(body).map_err(|e| HandlerError::Malformed(e.to_string()))?;
    if value.get("detail-type").and_then(Value::as_str) == Some(SCHEDULED_EVENT) {
        let schedule: EventBridgeEvent = serde_json::from_value(value)
            .map_err(|e| HandlerError::Malformed(format!("not a scheduled event: {e}")))?;
        return Ok(ControlJob {
            version: CONTRACT_VERSION,
            control_id: format!("schedule-{}", schedule.id.as_deref().unwrap_or("schedule")),
            fleet: fleet.to_owned(),
            emitted_at: schedule.time.unwrap_or_else(chrono::Utc::now),
            command: ControlCommand::Reconcile,
        });
    }
    ControlJob::from_value(value).map_err(|e| HandlerError::Malformed(e.to_string()))
}

impl<W: World, Q: ControlQueues> ControlHandler<W, Q> {
    pub fn new(executor: Executor<W>, queues: Q) -> Self {
        Self { executor, queues }
    }

    pub fn executor(&self) -> &Executor<W> {
        &self.executor
    }

    pub async fn handle(&self, payload: Value) -> Result<Value, HandlerError> {
        let payload = Payload::from_value(payload).map_err(|e| HandlerError::Malformed(e.to_string()))?;
        self.handle_until(payload, Deadline::NONE).await
    }

    /// [`ControlHandler::handle`] within an invocation that is stopped at `deadline`.
    pub async fn handle_until(&self, payload: Payload, deadline: Deadline) -> Result<Value, HandlerError> {
        let batch = match payload {
            Payload::Direct(event) => return self.handle_waiting(&event.to_string(), deadline).await,
            Payload::Batch(batch) => batch,
        };
        let mut response = SqsBatchResponse::default();
        // Why the batch stopped: every record from there on goes back, hidden for the same reason.
        let mut stopped: Option<Retry> = None;
        for record in &batch.records {
            if let Some(retry) = stopped {
                self.retry(record, retry, &mut response).await;
                continue;
            }
            match self.handle_waiting(record.text(), deadline).await {
                Ok(_) => {}
                Err(HandlerError::Malformed(reason)) => {
                    tracing::warn!(message_id = record.id(), %reason, "malformed control job, dead-lettering");
                    if let Err(error) = self.queues.dead_letter(record.text(), record.id(), &reason).await {
                        tracing::warn!(%error, "dead-lettering failed; retrying");
                        stopped = Some(Retry::Transient);
                        self.retry(record, Retry::Transient, &mut response).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(message_id = record.id(), %error, "control job not handled now; it and the rest of the batch will be retried");
                    let retry = if matches!(error, HandlerError::Busy(_)) { Retry::Busy } else { Retry::Transient };
                    stopped = Some(retry);
                    self.retry(record, retry, &mut response).await;
                }
            }
        }
        serde_json::to_value(response).map_err(|e| HandlerError::Malformed(e.to_string()))
    }

    /// Reports `record` failed and hides it until its retry is due.
    async fn retry(&self, record: &SqsMessage, retry: Retry, response: &mut SqsBatchResponse) {
        response.add_failure(record.id());
        let attempt = record.receive_count().saturating_sub(1);
        let delay = match retry {
            Retry::Busy => BUSY_REDELIVERY.redelivery(0, &mut rand::rng()),
            Retry::Transient => TRANSIENT_REDELIVERY.redelivery(attempt, &mut rand::rng()),
        };
        if let Err(error) = self.queues.delay_redelivery(record, delay).await {
            // The queue's own visibility timeout still applies.
            tracing::warn!(message_id = record.id(), %error, "could not set the retry delay");
        }
    }

    /// Handles a body, waiting for a busy fleet while enough of the invocation is left: another invocation
    /// holds the lock for the seconds its converge takes, and a spot warning must not wait for a redelivery.
    async fn handle_waiting(&self, body: &str, deadline: Deadline) -> Result<Value, HandlerError> {
        let mut pause = Duration::from_millis(200);
        loop {
            // Boxed: the engine's future is deep, and the retry loop around it would nest it too deep to lay out.
            match Box::pin(self.handle_body(body, deadline)).await {
                Err(HandlerError::Busy(until)) => {
                    let left = deadline.remaining(std::time::SystemTime::now()).unwrap_or_default();
                    if left < WORK_RESERVE + pause {
                        return Err(HandlerError::Busy(until));
                    }
                    let lapse = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                    tracing::info!(?pause, ?lapse, "the fleet is busy; waiting for it");
                    tokio::time::sleep(pause.min(lapse.max(Duration::from_millis(50)))).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    async fn handle_body(&self, body: &str, deadline: Deadline) -> Result<Value, HandlerError> {
        let job = parse_job(body, &self.executor.config().fleet)?;
        match self.executor.handle_until(&job, deadline).await? {
            Handled::Done(journal) => {
                for entry in &journal.entries {
                    let event = serde_json::to_string(entry).unwrap_or_default();
                    tracing::info!(control_id = %job.control_id, %event, "decision");
                }
                emit(journal.tally());
                Ok(json!({"control_id": job.control_id, "outcome": "done", "events": journal.entries.len()}))
            }
            Handled::Duplicate => Ok(json!({"control_id": job.control_id, "outcome": "duplicate"})),
            Handled::NotOurs => Ok(json!({"control_id": job.control_id, "outcome": "not_our_fleet"})),
            Handled::Busy { until } => Err(HandlerError::Busy(until)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Busy,
    Transient,
}

/// The control queues on SQS: the FIFO dead-letter queue (`queue_url`) for malformed jobs, and the source
/// queues of the records for their redelivery.
#[derive(Debug, Clone)]
pub struct SqsControlQueues {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl ControlQueues for SqsControlQueues {
    async fn delay_redelivery(&self, record: &SqsMessage, delay: Duration) -> Result<(), PortError> {
        let queue = record.queue_url().ok_or_else(|| PortError::new("redelivery", "the record names no queue"))?;
        self.client
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(record.receipt())
            .visibility_timeout(delay.as_secs().clamp(0, 43_200) as i32)
            .send()
            .await
            .map_err(|e| PortError::sdk("delay redelivery", &e))?;
        Ok(())
    }

    async fn dead_letter(&self, body: &str, message_id: &str, reason: &str) -> Result<(), PortError> {
        let letter = DeadLetter {
            body,
            source_message_id: message_id,
            error_class: "malformed_control_job",
            reason,
            attributes: Vec::new(),
        };
        letter.send(&self.client, &self.queue_url).await
    }
}

/// The invocation's counts as CloudWatch metrics (EMF on stdout), for the dashboard and the alarms.
fn emit(tally: Tally) {
    let mut metrics = Metrics::new("gameforge").dimension("function", "executor");
    metrics.count("capacity_shortages", tally.capacity_shortages);
    metrics.count("quota_blocks", tally.quota_blocks);
    metrics.count("migrations", tally.migrations);
    metrics.count("interruptions", tally.interruptions);
    metrics.count("untied_interruptions", tally.untied_interruptions);
    metrics.count("launched_spot", tally.launched_spot);
    metrics.count("launched_on_demand", tally.launched_on_demand);
    if let Some(desired) = tally.desired_workers {
        metrics.count("desired_workers", u64::from(desired));
    }
    metrics.emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_asks_for_a_reconcile_stamped_with_its_time() {
        let body = r#"{"version":"0","id":"5e1f3c9a","detail-type":"Scheduled Event","source":"aws.events",
            "account":"123456789012","time":"2026-11-27T10:00:00Z","region":"us-east-1",
            "resources":["arn:aws:events:us-east-1:123456789012:rule/gameforge-reconcile"],"detail":{}}"#;
        let job = parse_job(body, "gameforge").unwrap();
        assert_eq!(job.command, ControlCommand::Reconcile);
        assert_eq!(job.control_id, "schedule-5e1f3c9a");
        assert_eq!(job.fleet, "gameforge");
        assert_eq!(job.emitted_at.to_rfc3339(), "2026-11-27T10:00:00+00:00");
    }

    #[test]
    fn a_schedule_that_is_not_the_published_shape_is_malformed() {
        let body = r#"{"detail-type":"Scheduled Event","source":"aws.events","time":"yesterday","detail":{}}"#;
        assert!(
            matches!(parse_job(body, "gameforge"), Err(HandlerError::Malformed(reason)) if reason.contains("scheduled"))
        );
        assert!(matches!(parse_job("{\"type\": \"nothing\"}", "gameforge"), Err(HandlerError::Malformed(_))));
    }
}
