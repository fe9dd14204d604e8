use gameforge_contract::{CapacityType, IgnoreReason, InterruptionNotice, NoticeKind, Signal};

use super::{ignored, instance_action, instance_id, notice, stated_deadline, two_minutes_after};
use crate::envelope::EventEnvelope;

/// States in which the instance is going or gone; `pending` and `running` are noise.
const LEAVING_STATES: &[&str] = &["stopping", "stopped", "shutting-down", "terminated"];

/// What every EC2 instance notice reads alike, so that no kind of warning misses a field another kind has:
/// the instance (from the detail or `resources`), the action and a termination time the event states.
fn instance_notice(event: &EventEnvelope, kind: NoticeKind) -> InterruptionNotice {
    let mut signal = notice(event, kind);
    signal.instance_id = instance_id(event);
    signal.action = instance_action(event);
    signal.deadline = stated_deadline(event);
    signal
}

/// `EC2 Spot Instance Interruption Warning`: two minutes unless the warning says otherwise.
pub fn spot_interruption(event: &EventEnvelope) -> Signal {
    let mut signal = instance_notice(event, NoticeKind::SpotInterruption);
    signal.deadline = signal.deadline.or(two_minutes_after(event.time));
    signal.capacity_type = Some(CapacityType::Spot);
    Signal::Interruption(signal)
}

pub fn rebalance_recommendation(event: &EventEnvelope) -> Signal {
    let mut signal = instance_notice(event, NoticeKind::RebalanceRecommendation);
    signal.capacity_type = Some(CapacityType::Spot);
    Signal::Interruption(signal)
}

pub fn state_change(event: &EventEnvelope) -> Signal {
    let state = event.detail_str(&["state"]).unwrap_or_default();
    if !LEAVING_STATES.contains(&state) {
        return ignored(event, IgnoreReason::NotActionable, format!("instance state {state:?} needs no action"));
    }
    let mut signal = instance_notice(event, NoticeKind::StateChange);
    signal.state = Some(state.to_owned());
    Signal::Interruption(signal)
}

/// Both spellings of the capacity-reservation interruption warning: the same two minutes as spot unless the
/// warning states its `instance-termination-time`, as AWS documents it does.
pub fn capacity_reservation_interruption(event: &EventEnvelope) -> Signal {
    let mut signal = instance_notice(event, NoticeKind::CapacityReservation);
    signal.deadline = signal.deadline.or(two_minutes_after(event.time));
    signal.scope = event.detail_str(&["capacity-reservation-id"]).map(str::to_owned);
    Signal::Interruption(signal)
}

#[cfg(test)]
mod tests {
    use gameforge_contract::InstanceAction;
    use serde_json::{Value, json};

    use super::*;
    use crate::registry::Parser;

    const ARN: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0e884a1b153500dc2";

    fn event(detail_type: &str, time: Value, resources: &[&str], detail: Value) -> EventEnvelope {
        let event = json!({
            "version": "0", "id": "e1", "source": "aws.ec2", "detail-type": detail_type, "region": "us-east-1",
            "time": time, "resources": resources, "detail": detail,
        });
        EventEnvelope::from_value(event).unwrap()
    }

    fn interruption(signal: Signal) -> InterruptionNotice {
        match signal {
            Signal::Interruption(notice) => notice,
            other => panic!("not an interruption: {other:?}"),
        }
    }

    /// Every EC2 event that tells of an instance going away, with its parser.
    fn going_away() -> Vec<(&'static str, Parser, Value)> {
        vec![
            ("EC2 Spot Instance Interruption Warning", spot_interruption, json!({"instance-action": "terminate"})),
            ("EC2 Instance Rebalance Recommendation", rebalance_recommendation, json!({})),
            ("EC2 Instance State-change Notification", state_change, json!({"state": "shutting-down"})),
            ("EC2 Instance State-change Notification", state_change, json!({"state": "stopping"})),
            ("EC2 Instance State-change Notification", state_change, json!({"state": "terminated"})),
            ("EC2 Capacity Reservation Instance Interruption Warning", capacity_reservation_interruption, json!({})),
        ]
    }

    #[test]
    fn every_instance_going_away_is_acted_on_whatever_its_time_says() {
        for (detail_type, parse, mut detail) in going_away() {
            detail["instance-id"] = json!("i-0b662ef9931388ba0");
            for time in [json!(""), json!("TIME"), json!("not-a-date"), json!(42), Value::Null] {
                let notice = interruption(parse(&event(detail_type, time.clone(), &[], detail.clone())));
                assert_eq!(notice.instance_id.as_deref(), Some("i-0b662ef9931388ba0"), "{detail_type} {time}");
                assert_eq!(notice.observed_at, None, "{detail_type} {time}");
                assert_eq!(notice.deadline, None, "{detail_type} {time}: no time, so counted from receipt");
            }
        }
    }

    #[test]
    fn a_spot_warning_at_the_epoch_is_taken_as_written() {
        let notice = interruption(spot_interruption(&event(
            "EC2 Spot Instance Interruption Warning",
            json!("1970-01-01T00:00:00Z"),
            &[],
            json!({"instance-id": "i-0b662ef9931388ba0"}),
        )));
        assert_eq!(notice.deadline, Some("1970-01-01T00:02:00Z".parse().unwrap()));
    }

    #[test]
    fn a_stated_termination_time_wins_over_two_minutes_after_the_event() {
        let stated = json!("2026-11-27T10:25:00Z");
        for (detail_type, parse, mut detail) in going_away() {
            detail["instance-id"] = json!("i-0e884a1b153500dc2");
            detail["instance-termination-time"] = stated.clone();
            let notice = interruption(parse(&event(detail_type, json!("2026-11-27T10:20:00Z"), &[], detail)));
            assert_eq!(notice.deadline, Some("2026-11-27T10:25:00Z".parse().unwrap()), "{detail_type}");
        }
    }

    #[test]
    fn a_capacity_reservation_warning_reads_its_own_deadline_and_action() {
        let notice = interruption(capacity_reservation_interruption(&event(
            "EC2 Capacity Reservation Instance Interruption Warning",
            json!("2026-11-27T10:20:00Z"),
            &[ARN],
            json!({
                "instance-id": "i-0e884a1b153500dc2",
                "instance-action": "terminate",
                "instance-termination-time": "2026-11-27T10:21:30Z",
                "azId": "use1-az4",
            }),
        )));
        assert_eq!(notice.deadline, Some("2026-11-27T10:21:30Z".parse().unwrap()));
        assert_eq!(notice.action, Some(InstanceAction::Terminate));
    }

    #[test]
    fn an_unusable_termination_time_falls_back_to_two_minutes_after_the_event() {
        let notice = interruption(capacity_reservation_interruption(&event(
            "EC2 Interruptible Capacity Reservation Instance Interruption Warning",
            json!("2026-11-27T10:20:00Z"),
            &[],
            json!({"instance-id": "i-0e884a1b153500dc2", "instance-termination-time": "yyyy-mm-ddThh:mm:ssZ"}),
        )));
        assert_eq!(notice.deadline, Some("2026-11-27T10:22:00Z".parse().unwrap()));
    }

    #[test]
    fn every_instance_going_away_is_found_by_its_arn_alone() {
        for (detail_type, parse, detail) in going_away() {
            let notice = interruption(parse(&event(detail_type, json!("2026-11-27T10:20:00Z"), &[ARN], detail)));
            assert_eq!(notice.instance_id.as_deref(), Some("i-0e884a1b153500dc2"), "{detail_type}");
        }
    }

    #[test]
    fn a_running_instance_is_still_noise() {
        let signal = state_change(&event(
            "EC2 Instance State-change Notification",
            json!(""),
            &[ARN],
            json!({"instance-id": "i-0e884a1b153500dc2", "state": "running"}),
        ));
        assert!(matches!(signal, Signal::Ignored(_)), "{signal:?}");
    }
}
