//! The SQS event a Lambda function receives from its event source mapping and the partial-failure answer
//! (`ReportBatchItemFailures`), as AWS publishes them (`aws_lambda_events`), with what the functions read from a
//! record on top, and Lambda's own reading of an answer, which the local event source applies.

use std::collections::HashSet;

pub use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// What the functions read from a record. Every field of the published record is optional; a record SQS sent
/// always has them, and a missing one reads as empty rather than failing the batch.
pub trait SqsRecordExt {
    fn id(&self) -> &str;
    fn receipt(&self) -> &str;
    fn text(&self) -> &str;
    /// How many times SQS has delivered this message, this delivery included (1 when unknown).
    fn receive_count(&self) -> u32;
    /// The queue's name, from the record's ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
    fn queue_name(&self) -> Option<&str>;
    /// The queue's URL, rebuilt from the record's ARN the way SQS forms it (the SDK sends it to whatever
    /// endpoint it is configured with).
    fn queue_url(&self) -> Option<String>;
}

impl SqsRecordExt for SqsMessage {
    fn id(&self) -> &str {
        self.message_id.as_deref().unwrap_or_default()
    }

    fn receipt(&self) -> &str {
        self.receipt_handle.as_deref().unwrap_or_default()
    }

    fn text(&self) -> &str {
        self.body.as_deref().unwrap_or_default()
    }

    fn receive_count(&self) -> u32 {
        self.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
    }

    fn queue_name(&self) -> Option<&str> {
        self.event_source_arn.as_deref().and_then(|arn| arn.rsplit(':').next())
    }

    fn queue_url(&self) -> Option<String> {
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

/// What a function fed by a queue may be invoked with: a batch from its event source mapping, or one event
/// delivered directly (an EventBridge target, a schedule, a `cargo lambda invoke`), told apart once.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Batch(SqsEvent),
    Direct(Value),
}

impl Payload {
    /// A batch is a `Records` list of SQS records; anything else is a direct event. A batch whose records do
    /// not read as SQS records is an error, not a direct event.
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let is_batch = value.get("Records").and_then(Value::as_array).is_some_and(|records| {
            records.iter().all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        });
        if is_batch { serde_json::from_value(value).map(Payload::Batch) } else { Ok(Payload::Direct(value)) }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Payload::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The answer that names these records failed.
pub fn failures<'a>(ids: impl IntoIterator<Item = &'a str>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.set_failures(ids);
    response
}

/// How Lambda reads a function's answer to a batch of `sent` records: `Some(failed)` names the records to leave
/// on the queue (none: the whole batch succeeded); `None` means the whole batch comes back. No answer, or one
/// without `batchItemFailures` (or with it null or empty), is success; an answer that is not an object, or
/// names an identifier that is empty, missing, not a string or not one of the batch's, fails the whole batch.
pub fn batch_outcome(answer: &Value, sent: &HashSet<&str>) -> Option<HashSet<String>> {
    let failures = match answer {
        Value::Null => return Some(HashSet::new()),
        Value::Object(map) => match map.get("batchItemFailures") {
            None | Some(Value::Null) => return Some(HashSet::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return None,
        },
        _ => return None,
    };
    failures
        .iter()
        .map(|item| match item.get("itemIdentifier").and_then(Value::as_str) {
            Some(id) if !id.is_empty() && sent.contains(id) => Some(id.to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> SqsMessage {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_records_queue_url_is_rebuilt_from_its_arn() {
        let arn = |arn: &str| record(json!({"messageId": "m", "eventSourceARN": arn}));
        assert_eq!(
            arn("arn:aws:sqs:us-west-2:123456789012:gf-control.fifo").queue_url().as_deref(),
            Some("https://sqs.us-west-2.amazonaws.com/123456789012/gf-control.fifo")
        );
        assert_eq!(arn("arn:aws:sqs:us-west-2:123456789012:gf-control.fifo").queue_name(), Some("gf-control.fifo"));
        assert_eq!(arn("not an arn").queue_url(), None);
    }

    /// The record as AWS documents it, message attributes (string and binary) included.
    #[test]
    fn reads_the_documented_record() {
        let event: SqsEvent = serde_json::from_value(json!({"Records": [{
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": "test",
            "attributes": {
                "ApproximateReceiveCount": "3", "SentTimestamp": "1545082649183",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185"
            },
            "messageAttributes": {
                "reason": {"stringValue": "malformed", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
                "blob": {"binaryValue": "aGk=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"}
            },
            "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gameforge-signals",
            "awsRegion": "us-east-1"
        }]}))
        .unwrap();
        let record = &event.records[0];
        assert_eq!(
            (record.id(), record.receipt(), record.text()),
            ("059f36b4-87a3-44ab-83d2-661975830a7d", "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a", "test")
        );
        assert_eq!(record.receive_count(), 3);
        assert_eq!(record.queue_name(), Some("gameforge-signals"));
        assert_eq!(record.message_attributes["reason"].string_value.as_deref(), Some("malformed"));
        assert_eq!(record.message_attributes["blob"].binary_value.as_deref().map(Vec::as_slice), Some(&b"hi"[..]));
    }

    #[test]
    fn the_failure_answer_has_the_shape_lambda_expects() {
        assert_eq!(
            serde_json::to_value(failures(["m2"])).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "m2"}]})
        );
        assert_eq!(serde_json::to_value(failures([])).unwrap(), json!({"batchItemFailures": []}));
    }

    #[test]
    fn tells_a_batch_from_a_single_event() {
        let batch = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": "{}"}]});
        assert!(matches!(Payload::from_value(batch).unwrap(), Payload::Batch(b) if b.records[0].id() == "m"));
        assert!(matches!(
            Payload::from_value(json!({"Records": [{"eventSource": "aws:s3"}]})).unwrap(),
            Payload::Direct(_)
        ));
        assert!(matches!(Payload::from_value(json!({"id": "1", "source": "aws.ec2"})).unwrap(), Payload::Direct(_)));
        assert!(Payload::from_value(json!({"Records": [{"eventSource": "aws:sqs", "body": 5}]})).is_err());
        let parsed: Payload = serde_json::from_str(r#"{"Records": []}"#).unwrap();
        assert_eq!(parsed, Payload::Batch(SqsEvent::default()));
    }

    #[test]
    fn lambda_reads_answers_as_documented() {
        let sent: HashSet<&str> = ["a", "b"].into();
        let failed = |ids: &[&str]| Some(ids.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>());
        assert_eq!(batch_outcome(&json!(null), &sent), failed(&[]));
        assert_eq!(batch_outcome(&json!({}), &sent), failed(&[]));
        assert_eq!(batch_outcome(&json!({"batchItemFailures": null}), &sent), failed(&[]));
        assert_eq!(batch_outcome(&json!({"batchItemFailures": []}), &sent), failed(&[]));
        assert_eq!(batch_outcome(&json!({"batchItemFailures": [{"itemIdentifier": "b"}]}), &sent), failed(&["b"]));
        for whole_batch_again in [
            json!("not an object"),
            json!({"batchItemFailures": "b"}),
            json!({"batchItemFailures": [{"itemIdentifier": "unknown"}]}),
            json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            json!({"batchItemFailures": [{"itemIdentifier": null}]}),
            json!({"batchItemFailures": [{"itemId": "a"}]}),
        ] {
            assert_eq!(batch_outcome(&whole_batch_again, &sent), None, "{whole_batch_again}");
        }
    }

    /// The repository's own SQS fixtures, as `cargo lambda invoke` sends them, read as the published type.
    #[test]
    fn the_repositorys_sqs_fixtures_are_published_shapes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/sqs");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let payload = Payload::from_value(serde_json::from_str(&text).unwrap()).unwrap();
            assert!(matches!(payload, Payload::Batch(ref b) if !b.records.is_empty()), "{}", path.display());
            read += 1;
        }
        assert!(read > 0, "no fixtures under {}", dir.display());
    }
}
