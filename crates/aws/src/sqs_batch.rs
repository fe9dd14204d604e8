//! The SQS event a Lambda function receives from its event source mapping, and the partial-failure answer
//! (`ReportBatchItemFailures`) that makes SQS redeliver only the failed records.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    pub message_id: String,
    #[serde(default)]
    pub receipt_handle: String,
    #[serde(default)]
    pub body: String,
    /// `ApproximateReceiveCount`, `SentTimestamp`, `MessageGroupId`… as strings.
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    #[serde(default)]
    pub message_attributes: Value,
    #[serde(default)]
    pub md5_of_body: Option<String>,
    #[serde(default)]
    pub event_source: Option<String>,
    #[serde(default, rename = "eventSourceARN")]
    pub event_source_arn: Option<String>,
    #[serde(default)]
    pub aws_region: Option<String>,
}

impl SqsRecord {
    /// How many times SQS has delivered this message, this delivery included (1 when unknown).
    pub fn receive_count(&self) -> u32 {
        self.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
    }

    /// The queue's name, from the record's ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
    pub fn queue_name(&self) -> Option<&str> {
        self.event_source_arn.as_deref().and_then(|arn| arn.rsplit(':').next())
    }

    /// The queue's URL, rebuilt from the record's ARN the way SQS forms it (the SDK sends it to whatever
    /// endpoint it is configured with).
    pub fn queue_url(&self) -> Option<String> {
        let arn = self.event_source_arn.as_deref()?;
        match arn.split(':').collect::<Vec<_>>().as_slice() {
            ["arn", partition, "sqs", region, account, name] if !name.is_empty() => {
                let domain = if partition.starts_with("aws-cn") { "amazonaws.com.cn" } else { "amazonaws.com" };
                Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}

impl BatchResponse {
    pub fn fail(&mut self, message_id: impl Into<String>) {
        self.batch_item_failures.push(BatchItemFailure { item_identifier: message_id.into() });
    }

    pub fn failed_ids(&self) -> impl Iterator<Item = &str> {
        self.batch_item_failures.iter().map(|f| f.item_identifier.as_str())
    }
}

/// Whether a Lambda payload is an SQS batch (as opposed to a single event delivered directly).
pub fn is_sqs_batch(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|records| records.iter().all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_records_queue_url_is_rebuilt_from_its_arn() {
        let record = |arn: &str| -> SqsRecord {
            serde_json::from_value(serde_json::json!({"messageId": "m", "eventSourceARN": arn})).unwrap()
        };
        assert_eq!(
            record("arn:aws:sqs:us-west-2:123456789012:gf-control.fifo").queue_url().as_deref(),
            Some("https://sqs.us-west-2.amazonaws.com/123456789012/gf-control.fifo")
        );
        assert_eq!(record("arn:aws:sqs:us-west-2:123456789012:gf-control.fifo").queue_name(), Some("gf-control.fifo"));
        assert_eq!(record("not an arn").queue_url(), None);
    }
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_lambda_sqs_record() {
        let event: SqsEvent = serde_json::from_value(json!({"Records": [{
            "messageId": "m1", "receiptHandle": "r1", "body": "{}",
            "attributes": {"ApproximateReceiveCount": "3"}, "messageAttributes": {},
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gameforge-signals",
            "awsRegion": "us-east-1"
        }]}))
        .unwrap();
        let record = &event.records[0];
        assert_eq!(record.receive_count(), 3);
        assert_eq!(record.queue_name(), Some("gameforge-signals"));
    }

    #[test]
    fn the_failure_answer_has_the_shape_lambda_expects() {
        let mut response = BatchResponse::default();
        response.fail("m2");
        assert_eq!(serde_json::to_value(&response).unwrap(), json!({"batchItemFailures": [{"itemIdentifier": "m2"}]}));
    }

    #[test]
    fn tells_a_batch_from_a_single_event() {
        assert!(is_sqs_batch(&json!({"Records": [{"eventSource": "aws:sqs"}]})));
        assert!(!is_sqs_batch(&json!({"Records": [{"eventSource": "aws:s3"}]})));
        assert!(!is_sqs_batch(&json!({"id": "1", "source": "aws.ec2"})));
    }
}
