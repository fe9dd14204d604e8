//! The envelopes people feed `classify` by mistake: payloads that carry EventBridge events, or the makings of
//! one, without being one. Naming the envelope tells the user where the event is; naming the wrong one (an SNS
//! notification called an SQS batch) sends them looking in a field that is not there.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// A Lambda SQS event: `Records[]` with `eventSource` `aws:sqs`, an event in each `body`.
    SqsBatch,
    /// A Lambda SNS event: `Records[].Sns` (`EventSource` `aws:sns`), an event in each `Sns.Message`.
    Sns,
    /// A `PutEvents` request (`Entries[]`) or one entry: `Source`, `DetailType` and `Detail` as a string, which
    /// EventBridge turns into an event only on delivery.
    PutEvents,
}

impl Envelope {
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        if let Some(records) = value.get("Records").and_then(Value::as_array) {
            // Other services (S3 notifications among them) use `Records` too: only a record that says where it
            // came from decides.
            return records.iter().find_map(record_envelope);
        }
        if let Some(entries) = value.get("Entries").and_then(Value::as_array) {
            return entries.iter().any(is_put_events_entry).then_some(Self::PutEvents);
        }
        is_put_events_entry(&value).then_some(Self::PutEvents)
    }

    pub fn hint(self) -> &'static str {
        match self {
            Self::SqsBatch => "this is an SQS batch: classify the events in its records' bodies",
            Self::Sns => "this is an SNS notification: classify the event in each record's Sns.Message",
            Self::PutEvents => {
                "this is an EventBridge PutEvents entry, not a delivered event: classify the event EventBridge \
                 delivers, with source, detail-type and an object detail, rather than Source, DetailType and a \
                 Detail string"
            }
        }
    }
}

fn record_envelope(record: &Value) -> Option<Envelope> {
    let source = ["eventSource", "EventSource"].iter().find_map(|key| record.get(key)?.as_str());
    if record.get("Sns").is_some_and(Value::is_object) || source == Some("aws:sns") {
        Some(Envelope::Sns)
    } else if source == Some("aws:sqs") {
        Some(Envelope::SqsBatch)
    } else {
        None
    }
}

fn is_put_events_entry(value: &Value) -> bool {
    value.get("Detail").is_some_and(Value::is_string)
        && (value.get("DetailType").is_some() || value.get("Source").is_some())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn detect(value: Value) -> Option<Envelope> {
        Envelope::detect(value.to_string().as_bytes())
    }

    const EVENT: &str = r#"{"version":"0","id":"1","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","region":"us-east-1","detail":{}}"#;

    #[test]
    fn an_sqs_batch_is_an_sqs_batch() {
        let batch = json!({"Records": [{"messageId": "m1", "body": EVENT, "eventSource": "aws:sqs"}]});
        assert_eq!(detect(batch), Some(Envelope::SqsBatch));
    }

    #[test]
    fn an_sns_notification_is_not_called_an_sqs_batch() {
        let sns = json!({"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "Sns": {"Type": "Notification", "MessageId": "n1", "Message": EVENT},
        }]});
        assert_eq!(detect(sns), Some(Envelope::Sns));
        assert_eq!(detect(json!({"Records": [{"Sns": {"Message": EVENT}}]})), Some(Envelope::Sns));
        assert!(!Envelope::Sns.hint().contains("SQS"));
    }

    #[test]
    fn put_events_entries_are_recognised_as_a_request_or_one_entry() {
        let entry = json!({"Source": "aws.ec2", "DetailType": "EC2 Spot Instance Interruption Warning",
                           "Detail": "{\"instance-id\":\"i-0b662ef9931388ba0\"}", "Resources": []});
        assert_eq!(detect(json!({"Entries": [entry.clone()]})), Some(Envelope::PutEvents));
        assert_eq!(detect(entry), Some(Envelope::PutEvents));
    }

    #[test]
    fn other_records_and_plain_garbage_get_no_hint() {
        let s3 = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]});
        assert_eq!(detect(s3), None);
        assert_eq!(detect(json!({"Records": []})), None);
        assert_eq!(detect(json!({"Entries": [{"Id": "x"}]})), None);
        assert_eq!(detect(json!({"source": "aws.ec2", "detail": "oops"})), None);
        assert_eq!(Envelope::detect(b"not json"), None);
    }
}
