use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

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
        let time = match raw.time {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(
                DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| EnvelopeError::BadField { field: "time", problem: format!("is not RFC 3339: {e}") })?
                    .with_timezone(&Utc),
            ),
            Some(_) => return Err(EnvelopeError::BadField { field: "time", problem: "is not a string".into() }),
        };
        let resources = match raw.resources {
            Some(Value::Array(items)) => items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
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

    #[test]
    fn a_detail_that_is_not_an_object_is_malformed() {
        let error = EventEnvelope::from_json(
            br#"{"id":"1","source":"aws.ec2","detail-type":"x","region":"r","detail":"oops"}"#,
        )
        .unwrap_err();
        assert!(matches!(error, EnvelopeError::BadField { field: "detail", .. }));
    }
}
