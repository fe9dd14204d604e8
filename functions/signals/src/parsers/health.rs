use chrono::{DateTime, Utc};
use gameforge_contract::{IgnoreReason, NoticeKind, Signal};

use super::{ignored, notice};
use crate::envelope::EventEnvelope;
use crate::text;

/// `AWS Health Event`: EC2 scheduled changes (retirement, reboot, maintenance) for the instances it lists.
pub fn event(event: &EventEnvelope) -> Signal {
    let service = event.detail_str(&["service"]).unwrap_or_default();
    let category = event.detail_str(&["eventTypeCategory"]).unwrap_or_default();
    if service != "EC2" || category != "scheduledChange" {
        return ignored(event, IgnoreReason::NotActionable, format!("health event {service}/{category}"));
    }
    let mut instances: Vec<String> = event
        .detail
        .get("affectedEntities")
        .and_then(|entities| entities.as_array())
        .map(|entities| {
            entities
                .iter()
                .filter_map(|entity| entity.get("entityValue")?.as_str())
                .filter(|value| value.starts_with("i-"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if instances.is_empty() {
        instances = event.resources.iter().filter(|r| r.starts_with("i-")).cloned().collect();
    }
    let mut signal = notice(event, NoticeKind::ScheduledChange);
    signal.region = event.detail_str(&["eventRegion"]).unwrap_or(&event.region).to_owned();
    let mut instances = instances.into_iter();
    signal.instance_id = instances.next();
    signal.other_instance_ids = instances.collect();
    // The change starts at `startTime`; `endTime` is often absent and is not needed.
    signal.deadline = event.detail_str(&["startTime"]).and_then(health_time);
    signal.message = event.detail_str(&["eventTypeCode"]).map(text::shorten);
    Signal::Interruption(signal)
}

/// AWS Health writes RFC 1123 dates (`Wed, 02 Dec 2026 14:00:00 GMT`); accept RFC 3339 too.
fn health_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(text)
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc1123_and_rfc3339() {
        assert_eq!(health_time("Wed, 02 Dec 2026 14:00:00 GMT").unwrap().to_rfc3339(), "2026-12-02T14:00:00+00:00");
        assert_eq!(health_time("2026-12-02T14:00:00Z").unwrap().to_rfc3339(), "2026-12-02T14:00:00+00:00");
        assert_eq!(health_time("next tuesday"), None);
    }
}
