//! The Lambda entry point: SQS batches from the FIFO control queue and the retry queue, or a scheduled event
//! delivered directly. Records of a FIFO batch are handled in order; at the first one that cannot be handled now,
//! it and every record after it are reported failed, so that the fleet's jobs keep their order.

use gameforge_aws::metrics::Metrics;
use gameforge_aws::sqs_batch::{BatchResponse, SqsEvent, is_sqs_batch};
use gameforge_contract::{CONTRACT_VERSION, ControlCommand, ControlJob, Message};
use serde_json::{Value, json};

use crate::engine::{Executor, Handled};
use crate::journal::Tally;
use crate::ports::{PortError, World};

/// Where control jobs that can never be handled go.
pub trait DeadLetters: Send + Sync {
    fn dead_letter(
        &self,
        body: &str,
        message_id: &str,
        reason: &str,
    ) -> impl std::future::Future<Output = Result<(), PortError>> + Send;
}

#[derive(Debug)]
pub struct ControlHandler<W, D> {
    executor: Executor<W>,
    dead_letters: D,
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

/// A control job from a message body: a control job, or the scheduled event that asks for a reconcile (a
/// schedule's constant input is not always delivered, so its envelope is understood too).
pub fn parse_job(body: &str, fleet: &str) -> Result<ControlJob, HandlerError> {
    let value: Value = serde_json::from_str(body).map_err(|e| HandlerError::Malformed(e.to_string()))?;
    if value.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let id = value.get("id").and_then(Value::as_str).unwrap_or("schedule");
        let emitted_at =
            value.get("time").and_then(Value::as_str).and_then(|t| t.parse().ok()).unwrap_or_else(chrono::Utc::now);
        return Ok(ControlJob {
            version: CONTRACT_VERSION,
            control_id: format!("schedule-{id}"),
            fleet: fleet.to_owned(),
            emitted_at,
            command: ControlCommand::Reconcile,
        });
    }
    ControlJob::from_value(value).map_err(|e| HandlerError::Malformed(e.to_string()))
}

impl<W: World, D: DeadLetters> ControlHandler<W, D> {
    pub fn new(executor: Executor<W>, dead_letters: D) -> Self {
        Self { executor, dead_letters }
    }

    pub fn executor(&self) -> &Executor<W> {
        &self.executor
    }

    pub async fn handle(&self, payload: Value) -> Result<Value, HandlerError> {
        if is_sqs_batch(&payload) {
            let batch: SqsEvent =
                serde_json::from_value(payload).map_err(|e| HandlerError::Malformed(e.to_string()))?;
            let mut response = BatchResponse::default();
            let mut failing = false;
            for record in &batch.records {
                if failing {
                    response.fail(&record.message_id);
                    continue;
                }
                match self.handle_body(&record.body).await {
                    Ok(_) => {}
                    Err(HandlerError::Malformed(reason)) => {
                        tracing::warn!(message_id = %record.message_id, %reason, "malformed control job, dead-lettering");
                        if let Err(error) =
                            self.dead_letters.dead_letter(&record.body, &record.message_id, &reason).await
                        {
                            tracing::warn!(%error, "dead-lettering failed; retrying");
                            failing = true;
                            response.fail(&record.message_id);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(message_id = %record.message_id, %error, "control job not handled now; it and the rest of the batch will be retried");
                        failing = true;
                        response.fail(&record.message_id);
                    }
                }
            }
            return serde_json::to_value(response).map_err(|e| HandlerError::Malformed(e.to_string()));
        }
        self.handle_body(&payload.to_string()).await
    }

    async fn handle_body(&self, body: &str) -> Result<Value, HandlerError> {
        let job = parse_job(body, &self.executor.config().fleet)?;
        match self.executor.handle(&job).await? {
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

/// The FIFO control queue's dead-letter queue, with the reason.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl DeadLetters for SqsDeadLetters {
    async fn dead_letter(&self, body: &str, message_id: &str, reason: &str) -> Result<(), PortError> {
        let attribute = |value: &str| {
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value.chars().take(1024).collect::<String>())
                .build()
                .map_err(|e| PortError::new("build attribute", e))
        };
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(if body.is_empty() { "<empty>" } else { body })
            .message_attributes("error_class", attribute("malformed_control_job")?)
            .message_attributes("error_reason", attribute(reason)?)
            .message_attributes("source_message_id", attribute(message_id)?);
        if self.queue_url.ends_with(".fifo") {
            send = send.message_group_id("malformed").message_deduplication_id(message_id);
        }
        send.send()
            .await
            .map_err(|e| PortError::new("dead-letter control job", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// The invocation's counts as CloudWatch metrics (EMF on stdout), for the dashboard and the alarms.
fn emit(tally: Tally) {
    let mut metrics = Metrics::new("gameforge").dimension("function", "executor");
    metrics.count("capacity_shortages", tally.capacity_shortages);
    metrics.count("quota_blocks", tally.quota_blocks);
    metrics.count("migrations", tally.migrations);
    metrics.count("interruptions", tally.interruptions);
    metrics.count("launched_spot", tally.launched_spot);
    metrics.count("launched_on_demand", tally.launched_on_demand);
    if let Some(desired) = tally.desired_workers {
        metrics.count("desired_workers", u64::from(desired));
    }
    metrics.emit();
}
