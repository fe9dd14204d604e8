//! One module per event source. Each parser reads structured fields first and falls back to the free text.

pub mod autoscaling;
pub mod cloudtrail;
pub mod ec2;
pub mod ecs;
pub mod health;

use chrono::{DateTime, Utc};
use gameforge_contract::{
    CapacityShortage, CapacityType, IgnoreReason, IgnoredEvent, InterruptionNotice, NoticeKind, ShortageCause, Signal,
    SignalSource,
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
