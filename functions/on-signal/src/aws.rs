//! The AWS side of the ports: DynamoDB for the dedup store, SQS for the control queue and the signals queue.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};
use gameforge_aws::dead_letter::DeadLetter;
use gameforge_aws::sdk_error::lost_condition;
use gameforge_contract::ControlJob;

use crate::ports::{Claim, ControlSink, DedupStore, PortError, SignalQueue};

const PROCESSING: &str = "processing";
const DONE: &str = "done";

/// Dedup records keyed by EventBridge event id. A claim is a conditional put that succeeds only when no live
/// record exists: none at all, one past its expiry (DynamoDB deletes expired items up to days late, so expiry
/// is checked here rather than trusted to TTL), or a claim whose lease has lapsed.
#[derive(Debug, Clone)]
pub struct DynamoDedupStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

impl DynamoDedupStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, retention: Duration) -> Self {
        Self { client, table: table.into(), retention }
    }

    fn epoch(at: DateTime<Utc>, plus: Duration) -> AttributeValue {
        AttributeValue::N((at.timestamp() + plus.as_secs() as i64).to_string())
    }
}

impl DedupStore for DynamoDedupStore {
    async fn claim(
        &self,
        event_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, PortError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("event_id", AttributeValue::S(event_id.to_owned()))
            .item("state", AttributeValue::S(PROCESSING.into()))
            .item("owner", AttributeValue::S(owner.to_owned()))
            .item("claimed_at", AttributeValue::S(now.to_rfc3339()))
            .item("lease_until", Self::epoch(now, lease))
            .item("expires_at", Self::epoch(now, self.retention))
            .condition_expression(
                "attribute_not_exists(event_id) OR expires_at < :now OR (#state = :processing AND lease_until < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", Self::epoch(now, Duration::ZERO))
            .expression_attribute_values(":processing", AttributeValue::S(PROCESSING.into()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) if lost_condition(&e) => {
                let existing = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("event_id", AttributeValue::S(event_id.to_owned()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| PortError::sdk("read dedup record", &e))?;
                let item = existing.item.unwrap_or_default();
                let state = item.get("state").and_then(|v| v.as_s().ok()).map(String::as_str);
                let lease_until = item
                    .get("lease_until")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
                    .unwrap_or(now);
                Ok(if state == Some(DONE) { Claim::AlreadyDone } else { Claim::InFlight { lease_until } })
            }
            Err(e) => Err(PortError::sdk("claim event", &e)),
        }
    }

    async fn complete(
        &self,
        event_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        control_jobs: usize,
    ) -> Result<(), PortError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("event_id", AttributeValue::S(event_id.to_owned()))
            .update_expression("SET #state = :done, expires_at = :expires, completed_at = :at, control_jobs = :jobs")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":done", AttributeValue::S(DONE.into()))
            .expression_attribute_values(":expires", Self::epoch(now, self.retention))
            .expression_attribute_values(":at", AttributeValue::S(now.to_rfc3339()))
            .expression_attribute_values(":jobs", AttributeValue::N(control_jobs.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            // Our lease lapsed and another invocation took over; it sends the same control ids and completes.
            Err(e) if lost_condition(&e) => Ok(()),
            Err(e) => Err(PortError::sdk("complete event", &e)),
        }
    }

    async fn release(&self, event_id: &str, owner: &str) -> Result<(), PortError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("event_id", AttributeValue::S(event_id.to_owned()))
            .condition_expression("#owner = :owner AND #state = :processing")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":processing", AttributeValue::S(PROCESSING.into()))
            .send()
            .await;
        match delete {
            Ok(_) => Ok(()),
            Err(e) if lost_condition(&e) => Ok(()),
            Err(e) => Err(PortError::sdk("release claim", &e)),
        }
    }
}

/// The control queue is the one operators' tools send to as well.
impl ControlSink for gameforge_fleet::ControlQueue {
    async fn send(&self, jobs: &[ControlJob]) -> Result<(), PortError> {
        gameforge_fleet::ControlQueue::send(self, jobs).await
    }
}

/// The signals queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsSignalQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsSignalQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>, dead_letter_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into(), dead_letter_url: dead_letter_url.into() }
    }
}

impl SignalQueue for SqsSignalQueue {
    async fn dead_letter(&self, body: &str, message_id: &str, reason: &str) -> Result<(), PortError> {
        let letter = DeadLetter {
            body,
            source_message_id: message_id,
            error_class: "malformed_event",
            reason,
            attributes: Vec::new(),
        };
        letter.send(&self.client, &self.dead_letter_url).await
    }

    async fn delay_redelivery(&self, receipt_handle: &str, delay: Duration) -> Result<(), PortError> {
        // SQS caps visibility at 12 hours.
        let seconds = delay.as_secs().min(43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| PortError::sdk("delay redelivery", &e))?;
        Ok(())
    }
}
