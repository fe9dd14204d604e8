//! One module per event source. Each parser reads structured fields first and falls back to the free text.

pub mod autoscaling;
pub mod cloudtrail;
pub mod ec2;
pub mod ecs;
pub mod health;

use chrono::{DateTime, Utc};
use gameforge_contract::{
    CapacityShortage, CapacityType, IgnoreReason, IgnoredEvent, InstanceAction, InterruptionNotice, NoticeKind,
    ShortageCause, Signal, SignalSource,
};
use serde_json::Value;

use crate::envelope::EventEnvelope;
use crate::text;

pub fn ignored(event: &EventEnvelope, reason: IgnoreReason, detail: impl Into<String>) -> Signal {
    Signal::Ignored(IgnoredEvent {
        event_id: event.id.clone(),
        region: event.region.clone(),
        reason,
        event_source: event.source.clone(),
        detail_type: event.detail_type.clone(),
        detail: Some(text::shorten(&detail.into())),
    })
}

/// A shortage with nothing but its cause and source known; parsers fill in what their event reveals.
fn shortage(event: &EventEnvelope, cause: ShortageCause, source: SignalSource) -> CapacityShortage {
    CapacityShortage {
        event_id: event.id.clone(),
        region: event.region.clone(),
        instance_type: None,
        availability_zone: None,
        capacity_type: None,
        cause,
        source,
        observed_at: event.time,
        error_code: None,
        available_zones: Vec::new(),
        other_offerings: Vec::new(),
        scope: None,
        message: None,
    }
}

fn notice(event: &EventEnvelope, notice: NoticeKind) -> InterruptionNotice {
    InterruptionNotice {
        event_id: event.id.clone(),
        region: event.region.clone(),
        instance_id: None,
        notice,
        deadline: None,
        observed_at: event.time,
        action: None,
        state: None,
        availability_zone: None,
        capacity_type: None,
        other_instance_ids: Vec::new(),
        scope: None,
        message: None,
    }
}

/// Two minutes after the notice, as AWS promises for spot and interruptible reservations.
fn two_minutes_after(time: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    time.map(|t| t + chrono::Duration::seconds(120))
}

/// The termination time an EC2 warning states itself. It wins over any deadline implied by the event's `time`:
/// the sender knows when it will act, and `time` says only when the event was written.
fn stated_deadline(event: &EventEnvelope) -> Option<DateTime<Utc>> {
    event.detail_str(&["instance-termination-time"]).and_then(text::time::read)
}

/// `instance-action`, in any case.
fn instance_action(event: &EventEnvelope) -> Option<InstanceAction> {
    match event.detail_str(&["instance-action"])?.to_ascii_lowercase().as_str() {
        "terminate" => Some(InstanceAction::Terminate),
        "stop" => Some(InstanceAction::Stop),
        "hibernate" => Some(InstanceAction::Hibernate),
        _ => None,
    }
}

/// The instance an EC2 event is about: `detail.instance-id`, else the first instance named in `resources`
/// (some senders give only the instance's ARN there).
fn instance_id(event: &EventEnvelope) -> Option<String> {
    event
        .detail_str(&["instance-id"])
        .map(|id| instance_named(id).unwrap_or(id))
        .or_else(|| event.resources.iter().find_map(|r| instance_named(r)))
        .map(str::to_owned)
}

/// The instance id in `i-…` or in an instance ARN. Only the ARN's last part is read: public samples put a zone
/// in its region slot. Emulators name instances loosely (`i-1`), so the id is not held to EC2's 8 or 17 hex
/// digits.
fn instance_named(text: &str) -> Option<&str> {
    let text = text.trim();
    let id = match text.rsplit_once(":instance/") {
        Some((_, id)) => id,
        None => text,
    };
    let rest = id.strip_prefix("i-")?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// Depth-first search for a key, ignoring case, since CloudTrail and the EC2 API differ in casing.
fn find_key<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

fn find_str<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    find_key(value, key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// Reads `spot`, `on-demand`, `on_demand`, `ondemand` in any case.
fn capacity_type_named(text: &str) -> Option<CapacityType> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("spot") {
        Some(CapacityType::Spot)
    } else if lower.contains("on-demand") || lower.contains("on_demand") || lower.contains("ondemand") {
        Some(CapacityType::OnDemand)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(resources: &[&str], detail: Value) -> EventEnvelope {
        EventEnvelope {
            id: "1".into(),
            source: "aws.ec2".into(),
            detail_type: "x".into(),
            region: "us-east-1".into(),
            time: Some("2026-11-27T10:20:00Z".parse().unwrap()),
            resources: resources.iter().map(|r| (*r).to_owned()).collect(),
            detail,
        }
    }

    #[test]
    fn names_an_instance_by_id_or_by_arn() {
        assert_eq!(instance_named("i-0e884a1b153500dc2"), Some("i-0e884a1b153500dc2"));
        assert_eq!(instance_named("i-0e884a1b"), Some("i-0e884a1b"));
        assert_eq!(
            instance_named("arn:aws:ec2:us-east-1:123456789012:instance/i-0e884a1b153500dc2"),
            Some("i-0e884a1b153500dc2")
        );
        // A zone in the region slot, as in public samples, and another partition.
        assert_eq!(instance_named("arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0"), Some("i-0b662ef9931388ba0"));
        assert_eq!(
            instance_named("arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-0e884a1b153500dc2"),
            Some("i-0e884a1b153500dc2")
        );
        for other in [
            "arn:aws:ec2:us-east-1:123456789012:volume/vol-0e884a1b153500dc2",
            "arn:aws:ecs:us-east-1:123456789012:task/gameforge/8f0a2c4e6a8c4e0a9c2e4a6c8e0a2c4e",
            "arn:aws:ec2:us-east-1:123456789012:instance/",
            "i-",
            "i-0e884a1b153500dc2/extra",
            "instance/i-0e884a1b153500dc2",
            "",
        ] {
            assert_eq!(instance_named(other), None, "{other}");
        }
    }

    #[test]
    fn the_instance_comes_from_resources_when_the_detail_lacks_it() {
        let arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0e884a1b153500dc2";
        let volume = "arn:aws:ec2:us-east-1:123456789012:volume/vol-0a1b2c3d4e5f67890";
        assert_eq!(instance_id(&event(&[volume, arn], serde_json::json!({}))).as_deref(), Some("i-0e884a1b153500dc2"));
        assert_eq!(
            instance_id(&event(&[arn], serde_json::json!({"instance-id": ""}))).as_deref(),
            Some("i-0e884a1b153500dc2")
        );
        assert_eq!(
            instance_id(&event(&[arn], serde_json::json!({"instance-id": "i-0b662ef9931388ba0"}))).as_deref(),
            Some("i-0b662ef9931388ba0"),
            "the detail's own id comes first"
        );
        assert_eq!(instance_id(&event(&[volume], serde_json::json!({}))), None);
    }

    #[test]
    fn a_stated_termination_time_is_read_and_an_unusable_one_ignored() {
        let stated = event(&[], serde_json::json!({"instance-termination-time": "2026-11-27T10:25:00Z"}));
        assert_eq!(stated_deadline(&stated), Some("2026-11-27T10:25:00Z".parse().unwrap()));
        for unusable in ["", "TIME", "soon"] {
            assert_eq!(stated_deadline(&event(&[], serde_json::json!({"instance-termination-time": unusable}))), None);
        }
    }

    #[test]
    fn reads_the_instance_action_in_any_case() {
        let action = |a: &str| instance_action(&event(&[], serde_json::json!({"instance-action": a})));
        assert_eq!(action("terminate"), Some(InstanceAction::Terminate));
        assert_eq!(action("STOP"), Some(InstanceAction::Stop));
        assert_eq!(action(" Hibernate "), Some(InstanceAction::Hibernate));
        assert_eq!(action("reboot"), None);
    }
}
