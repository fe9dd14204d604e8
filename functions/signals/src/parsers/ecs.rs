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
/// start for lack of capacity; anything else is the service doing its job.
pub fn task_state_change(event: &EventEnvelope) -> Signal {
    let status = event.detail_str(&["lastStatus"]).unwrap_or_default();
    if status != "STOPPED" {
        return ignored(event, IgnoreReason::NotActionable, format!("task is {status}"));
    }
    let stop_code = event.detail_str(&["stopCode"]).unwrap_or_default();
    let reason = event.detail_str(&["stoppedReason"]).unwrap_or_default();
    let facts = text::read(reason);
    let zone = event.detail_str(&["availabilityZone"]).map(str::to_owned);
    let provider_capacity = event.detail_str(&["capacityProviderName"]).and_then(capacity_type_named);
    let task = event.detail_str(&["taskArn"]).map(str::to_owned);

    let host_lost = reason.contains("Host EC2");
    let spot_stop = matches!(stop_code, "SpotInterruption" | "TerminationNotice")
        || reason.to_ascii_lowercase().contains("spot task was interrupted");
    if host_lost || spot_stop {
        let mut signal = notice(event, NoticeKind::TaskStopped);
        signal.instance_id = facts.instance_id;
        signal.availability_zone = zone;
        signal.capacity_type = if spot_stop { Some(CapacityType::Spot) } else { provider_capacity };
        signal.scope = task;
        signal.message = Some(text::shorten(&format!("{stop_code}: {reason}")));
        return Signal::Interruption(signal);
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
