use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::text;

/// The part of every EventBridge event that the classifier relies on.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    pub id: String,
    pub source: String,
    pub detail_type: String,
    pub region: String,
    pub time: Option<DateTime<Utc>>,
    pub resources: Vec<String>,
    pub detail: Value,
}

/// Input that is not an EventBridge event. Distinct from an event the classifier does not know, which is
/// classified as ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not an EventBridge event: expected a JSON object")]
    NotAnObject,
    #[error("not an EventBridge event: missing or empty `{0}`")]
    MissingField(&'static str),
    #[error("not an EventBridge event: `{field}` {problem}")]
    BadField { field: &'static str, problem: String },
}

#[derive(Deserialize)]
struct Raw {
    id: Option<Value>,
    source: Option<Value>,
    #[serde(rename = "detail-type")]
    detail_type: Option<Value>,
    region: Option<Value>,
    time: Option<Value>,
    resources: Option<Value>,
    detail: Option<Value>,
}

impl EventEnvelope {
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, EnvelopeError> {
        if !value.is_object() {
            return Err(EnvelopeError::NotAnObject);
        }
        let raw: Raw = serde_json::from_value(value).map_err(|_| EnvelopeError::NotAnObject)?;
        // `source` and `detail-type` decide whether this is an event at all; the rest is checked after them so
        // that the error names the most telling problem.
        let source = required_string(raw.source, "source")?;
        let detail_type = required_string(raw.detail_type, "detail-type")?;
        let id = required_string(raw.id, "id")?;
        let region = required_string(raw.region, "region")?;
        // A garbled `time` ("", a placeholder, a number) is treated as absent, as `null` is: rejecting the event
        // would dead-letter a warning that an instance is going away, and no parser needs the time to know
        // what happened, only when (a missing time leaves the deadline to be counted from receipt).
        let time = raw.time.as_ref().and_then(Value::as_str).and_then(text::time::read);
        let resources = match raw.resources {
            Some(Value::Array(items)) => items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            // AWS's own sample of the capacity-reservation warning gives its one ARN as a bare string.
            Some(Value::String(one)) => vec![one],
            _ => Vec::new(),
        };
        let detail = match raw.detail {
            Some(detail @ Value::Object(_)) => detail,
            // EventBridge always sends an object, possibly empty; a missing one is treated as empty.
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(_) => return Err(EnvelopeError::BadField { field: "detail", problem: "is not an object".into() }),
        };
        Ok(Self { id, source, detail_type, region, time, resources, detail })
    }

    /// A string under `detail` at `path`, trimmed, `None` when absent, empty or not a string.
    pub fn detail_str(&self, path: &[&str]) -> Option<&str> {
        let mut at = &self.detail;
        for key in path {
            at = at.get(key)?;
        }
        at.as_str().map(str::trim).filter(|s| !s.is_empty())
    }
}

fn required_string(value: Option<Value>, field: &'static str) -> Result<String, EnvelopeError> {
    match value {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(EnvelopeError::MissingField(field)),
        Some(_) => Err(EnvelopeError::BadField { field, problem: "is not a string".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_field() {
        let error = EventEnvelope::from_json(br#"{"id":"1","detail-type":"x","region":"r"}"#).unwrap_err();
        assert_eq!(error, EnvelopeError::MissingField("source"));
        let error = EventEnvelope::from_json(br#"{"id":"1","source":"aws.ec2","region":"r"}"#).unwrap_err();
        assert_eq!(error, EnvelopeError::MissingField("detail-type"));
    }

    #[test]
    fn garbage_is_not_an_event() {
        assert!(matches!(EventEnvelope::from_json(b"not json"), Err(EnvelopeError::NotJson(_))));
        assert_eq!(EventEnvelope::from_json(b"[]").unwrap_err(), EnvelopeError::NotAnObject);
        assert_eq!(EventEnvelope::from_json(b"42").unwrap_err(), EnvelopeError::NotAnObject);
    }

    #[test]
    fn tolerates_a_missing_account_and_detail() {
        let event = EventEnvelope::from_json(
            br#"{"version":"0","id":"1","source":"aws.ec2","detail-type":"x","region":"us-east-1","time":"2026-11-27T10:00:00Z"}"#,
        )
        .unwrap();
        assert!(event.detail.as_object().unwrap().is_empty());
        assert_eq!(event.time.unwrap().to_rfc3339(), "2026-11-27T10:00:00+00:00");
    }

    fn with_time(time: &str) -> String {
        format!(
            r#"{{"id":"1","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","region":"us-east-1","time":{time},"detail":{{"instance-id":"i-0b662ef9931388ba0"}}}}"#
        )
    }

    #[test]
    fn an_unusable_time_is_absent_rather_than_malformed() {
        for time in [r#""""#, r#""   ""#, r#""TIME""#, r#""not-a-date""#, "42", "{}", "[]", "true", "null"] {
            let event = EventEnvelope::from_json(with_time(time).as_bytes())
                .unwrap_or_else(|e| panic!("time {time} made the event malformed: {e}"));
            assert_eq!(event.time, None, "time {time}");
        }
    }

    #[test]
    fn a_usable_time_is_kept_even_at_the_epoch() {
        let event = EventEnvelope::from_json(with_time(r#""1970-01-01T00:00:00Z""#).as_bytes()).unwrap();
        assert_eq!(event.time, Some(DateTime::<Utc>::UNIX_EPOCH));
    }

    #[test]
    fn a_single_resource_given_as_a_string_is_read() {
        let event = EventEnvelope::from_json(
            br#"{"id":"1","source":"aws.ec2","detail-type":"x","region":"r","resources":"arn:aws:ec2:us-east-1:123456789012:instance/i-0e884a1b153500dc2"}"#,
        )
        .unwrap();
        assert_eq!(event.resources, vec!["arn:aws:ec2:us-east-1:123456789012:instance/i-0e884a1b153500dc2"]);
    }

    #[test]
    fn a_detail_that_is_not_an_object_is_malformed() {
        let error = EventEnvelope::from_json(
            br#"{"id":"1","source":"aws.ec2","detail-type":"x","region":"r","detail":"oops"}"#,
        )
        .unwrap_err();
        assert!(matches!(error, EnvelopeError::BadField { field: "detail", .. }));
    }
}
