use gameforge_contract::{CapacityType, IgnoreReason, NoticeKind, ShortageCause, Signal, SignalSource};

use super::{capacity_type_named, ignored, notice, shortage};
use crate::envelope::EventEnvelope;
use crate::text;

/// `ECS Service Action`: only `SERVICE_TASK_PLACEMENT_FAILURE` with a `RESOURCE:` reason is about capacity.
pub fn service_action(event: &EventEnvelope) -> Signal {
    let name = event.detail_str(&["eventName"]).unwrap_or_default();
    if name != "SERVICE_TASK_PLACEMENT_FAILURE" {
        return ignored(event, IgnoreReason::NotActionable, format!("service event {name}"));
    }
    let reason = event.detail_str(&["reason"]).unwrap_or_default();
    // The literal after the prefix (`GPU`, `CPU`, `MEMORY`) is not documented for every resource.
    if !reason.to_ascii_uppercase().starts_with("RESOURCE:") {
        return ignored(event, IgnoreReason::NotACapacityFailure, format!("placement failed: {reason}"));
    }
    let mut signal = shortage(event, ShortageCause::PlacementFailure, SignalSource::EcsService);
    signal.capacity_type = event
        .detail
        .get("capacityProviderArns")
        .and_then(|arns| arns.as_array()?.iter().filter_map(|arn| arn.as_str()).find_map(capacity_type_named));
    signal.scope = event.resources.first().cloned().or_else(|| event.detail_str(&["clusterArn"]).map(str::to_owned));
    signal.message = Some(reason.to_owned());
    Signal::CapacityUnavailable(signal)
}

/// `ECS Task State Change`: a stopped task tells of a lost host, a spot interruption, or a task that could not
/// start for lack of capacity; anything else is the service doing its job. A task that is still running but
/// that ECS means to stop for one of those reasons is announced before it stops: the announcement is the
/// earlier warning, so it is acted on as the stop is.
pub fn task_state_change(event: &EventEnvelope) -> Signal {
    let status = event.detail_str(&["lastStatus"]).unwrap_or_default();
    let desired = event.detail_str(&["desiredStatus"]).unwrap_or_default();
    let stop_code = event.detail_str(&["stopCode"]).unwrap_or_default();
    let reason = event.detail_str(&["stoppedReason"]).unwrap_or_default();
    let facts = text::read(reason);
    let zone = event.detail_str(&["availabilityZone"]).map(str::to_owned);
    let provider_capacity = event.detail_str(&["capacityProviderName"]).and_then(capacity_type_named);
    let task = event.detail_str(&["taskArn"]).map(str::to_owned);

    let stopping = status == "STOPPED" || desired == "STOPPED";
    let host_lost = reason.contains("Host EC2");
    let spot_stop = matches!(stop_code, "SpotInterruption" | "TerminationNotice")
        || reason.to_ascii_lowercase().contains("spot task was interrupted");
    if stopping && (host_lost || spot_stop) {
        let mut signal = notice(event, NoticeKind::TaskStopped);
        signal.instance_id = facts.instance_id;
        signal.availability_zone = zone;
        signal.capacity_type = if spot_stop { Some(CapacityType::Spot) } else { provider_capacity };
        signal.scope = task;
        signal.message = Some(text::shorten(&format!("{stop_code}: {reason}")));
        return Signal::Interruption(signal);
    }
    if status != "STOPPED" {
        return ignored(event, IgnoreReason::NotActionable, format!("task is {status}"));
    }
    if stop_code == "TaskFailedToStart"
        && let Some(cause) = facts.cause
    {
        let mut signal = shortage(event, cause, SignalSource::EcsTask);
        signal.instance_type = facts.instance_type;
        signal.availability_zone = zone.or(facts.availability_zone);
        signal.capacity_type = provider_capacity.or(facts.spot.then_some(CapacityType::Spot));
        signal.scope = event.detail_str(&["group"]).map(str::to_owned).or(task);
        signal.message = Some(text::shorten(reason));
        return Signal::CapacityUnavailable(signal);
    }
    ignored(event, IgnoreReason::NotActionable, format!("task stopped: {stop_code}: {reason}"))
}

#[cfg(test)]
mod tests {
    use gameforge_contract::InterruptionNotice;
    use serde_json::{Value, json};

    use super::*;

    fn task(time: Value, detail: Value) -> Signal {
        let mut base = json!({
            "availabilityZone": "us-east-1b",
            "capacityProviderName": "gameforge-g5-spot",
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/gameforge/8f0a2c4e6a8c4e0a9c2e4a6c8e0a2c4e",
        });
        base.as_object_mut().unwrap().extend(detail.as_object().unwrap().clone());
        task_state_change(
            &EventEnvelope::from_value(json!({
                "id": "t1", "source": "aws.ecs", "detail-type": "ECS Task State Change", "region": "us-east-1",
                "time": time, "detail": base,
            }))
            .unwrap(),
        )
    }

    fn interruption(signal: Signal) -> InterruptionNotice {
        match signal {
            Signal::Interruption(notice) => notice,
            other => panic!("not an interruption: {other:?}"),
        }
    }

    #[test]
    fn a_running_task_that_ecs_will_stop_for_a_spot_interruption_is_an_interruption() {
        for status in ["RUNNING", "PENDING", "DEACTIVATING", "STOPPING"] {
            for code in ["SpotInterruption", "TerminationNotice"] {
                let notice = interruption(task(
                    json!("2026-11-27T10:02:05Z"),
                    json!({"lastStatus": status, "desiredStatus": "STOPPED", "stopCode": code,
                           "stoppedReason": "Your Spot Task was interrupted."}),
                ));
                assert_eq!(notice.notice, NoticeKind::TaskStopped, "{status} {code}");
                assert_eq!(notice.capacity_type, Some(CapacityType::Spot));
                assert_eq!(notice.availability_zone.as_deref(), Some("us-east-1b"));
                assert!(notice.scope.as_deref().unwrap().contains(":task/gameforge/"));
                assert!(notice.message.as_deref().unwrap().starts_with(code));
            }
        }
    }

    #[test]
    fn an_announced_stop_names_the_instance_when_the_reason_does() {
        let notice = interruption(task(
            json!(""),
            json!({"lastStatus": "RUNNING", "desiredStatus": "STOPPED", "stopCode": "TerminationNotice",
                   "stoppedReason": "Host EC2 (instance i-0b662ef9931388ba0) is being terminated."}),
        ));
        assert_eq!(notice.instance_id.as_deref(), Some("i-0b662ef9931388ba0"));
        assert_eq!(notice.observed_at, None);
    }

    #[test]
    fn a_running_task_with_no_stop_in_sight_is_noise() {
        for detail in [
            json!({"lastStatus": "RUNNING", "desiredStatus": "RUNNING"}),
            // Scaled in by its service: stopped on purpose, nothing lost.
            json!({"lastStatus": "RUNNING", "desiredStatus": "STOPPED", "stopCode": "ServiceSchedulerInitiated",
                   "stoppedReason": "Scaling activity initiated by (deployment ecs-svc/123)"}),
            json!({"lastStatus": "RUNNING", "desiredStatus": "STOPPED", "stopCode": "UserInitiated"}),
            // The stop code alone, with a task ECS still wants running, is not an announcement.
            json!({"lastStatus": "RUNNING", "desiredStatus": "RUNNING", "stopCode": "SpotInterruption"}),
        ] {
            let signal = task(json!("2026-11-27T10:02:05Z"), detail.clone());
            assert!(matches!(signal, Signal::Ignored(_)), "{detail}: {signal:?}");
        }
    }

    #[test]
    fn a_stopped_spot_task_is_still_an_interruption() {
        let notice = interruption(task(
            json!("2026-11-27T10:03:58Z"),
            json!({"lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": "TerminationNotice",
                   "stoppedReason": "Your Spot Task was interrupted."}),
        ));
        assert_eq!(notice.capacity_type, Some(CapacityType::Spot));
    }
}
