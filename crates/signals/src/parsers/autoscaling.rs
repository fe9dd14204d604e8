use gameforge_contract::{CapacityType, IgnoreReason, Signal, SignalSource};

use super::{ignored, shortage};
use crate::envelope::EventEnvelope;
use crate::text;

/// `EC2 Instance Launch Unsuccessful`: the reason is only in `StatusMessage`, as text.
pub fn launch_unsuccessful(event: &EventEnvelope) -> Signal {
    let message = event.detail_str(&["StatusMessage"]).unwrap_or_default();
    let facts = text::read(message);
    let Some(cause) = facts.cause else {
        return ignored(event, IgnoreReason::NotACapacityFailure, message);
    };
    let mut signal = shortage(event, cause, SignalSource::Autoscaling);
    signal.instance_type = facts.instance_type;
    signal.availability_zone =
        event.detail_str(&["Details", "Availability Zone"]).map(str::to_owned).or(facts.availability_zone);
    signal.capacity_type = facts.spot.then_some(CapacityType::Spot);
    signal.error_code = facts.error_code;
    signal.available_zones = facts.available_zones;
    signal.scope = event.detail_str(&["AutoScalingGroupName"]).map(str::to_owned);
    signal.message = Some(text::shorten(message));
    Signal::CapacityUnavailable(signal)
}
