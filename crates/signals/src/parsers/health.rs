use gameforge_contract::{IgnoreReason, NoticeKind, Signal};

use super::{ignored, instance_named, notice};
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
                .filter_map(|entity| instance_named(entity.get("entityValue")?.as_str()?))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if instances.is_empty() {
        instances = event.resources.iter().filter_map(|r| instance_named(r)).map(str::to_owned).collect();
    }
    let mut signal = notice(event, NoticeKind::ScheduledChange);
    signal.region = event.detail_str(&["eventRegion"]).unwrap_or(&event.region).to_owned();
    let mut instances = instances.into_iter();
    signal.instance_id = instances.next();
    signal.other_instance_ids = instances.collect();
    // The change starts at `startTime`; `endTime` is often absent and is not needed. AWS Health writes RFC 1123
    // dates whose weekday does not always match the date, so they are read leniently.
    signal.deadline = event.detail_str(&["startTime"]).and_then(text::time::read);
    signal.message = event.detail_str(&["eventTypeCode"]).map(text::shorten);
    Signal::Interruption(signal)
}

#[cfg(test)]
mod tests {
    use gameforge_contract::InterruptionNotice;
    use serde_json::{Value, json};

    use super::*;

    fn scheduled_change(time: Value, resources: &[&str], detail: Value) -> InterruptionNotice {
        let mut base = json!({
            "service": "EC2", "eventTypeCategory": "scheduledChange",
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        });
        base.as_object_mut().unwrap().extend(detail.as_object().unwrap().clone());
        let envelope = EventEnvelope::from_value(json!({
            "id": "h1", "source": "aws.health", "detail-type": "AWS Health Event", "region": "us-east-1",
            "time": time, "resources": resources, "detail": base,
        }))
        .unwrap();
        match event(&envelope) {
            Signal::Interruption(notice) => notice,
            other => panic!("not an interruption: {other:?}"),
        }
    }

    #[test]
    fn a_start_time_whose_weekday_does_not_match_its_date_still_gives_the_deadline() {
        // 5 December 2026 is a Saturday.
        let notice = scheduled_change(
            json!("2026-11-27T09:00:00Z"),
            &["i-0b662ef9931388ba0"],
            json!({"startTime": "Fri, 5 Dec 2026 10:00:00 GMT"}),
        );
        assert_eq!(notice.deadline, Some("2026-12-05T10:00:00Z".parse().unwrap()));
    }

    #[test]
    fn reads_rfc1123_and_rfc3339_start_times() {
        for start in ["Wed, 02 Dec 2026 14:00:00 GMT", "2026-12-02T14:00:00Z", "Wednesday, 02-Dec-26 14:00:00 GMT"] {
            let notice = scheduled_change(json!(null), &["i-0b662ef9931388ba0"], json!({"startTime": start}));
            assert_eq!(notice.deadline, Some("2026-12-02T14:00:00Z".parse().unwrap()), "{start}");
        }
        let notice = scheduled_change(json!(null), &["i-0b662ef9931388ba0"], json!({"startTime": "next tuesday"}));
        assert_eq!(notice.deadline, None);
    }

    #[test]
    fn a_scheduled_change_with_an_unusable_time_is_acted_on() {
        for time in [json!(""), json!("TIME"), json!("not-a-date")] {
            let notice = scheduled_change(
                time.clone(),
                &[],
                json!({"startTime": "Wed, 02 Dec 2026 14:00:00 GMT",
                       "affectedEntities": [{"entityValue": "i-0b662ef9931388ba0"}]}),
            );
            assert_eq!(notice.instance_id.as_deref(), Some("i-0b662ef9931388ba0"), "{time}");
            assert_eq!(notice.observed_at, None, "{time}");
        }
    }

    #[test]
    fn instances_named_by_arn_are_found_in_entities_and_resources() {
        let arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0e884a1b153500dc2";
        let notice = scheduled_change(json!(null), &[], json!({"affectedEntities": [{"entityValue": arn}]}));
        assert_eq!(notice.instance_id.as_deref(), Some("i-0e884a1b153500dc2"));
        let notice = scheduled_change(json!(null), &[arn, "i-0b662ef9931388ba0"], json!({}));
        assert_eq!(notice.instance_id.as_deref(), Some("i-0e884a1b153500dc2"));
        assert_eq!(notice.other_instance_ids, vec!["i-0b662ef9931388ba0"]);
    }
}
