use gameforge_contract::{CapacityType, IgnoreReason, InstanceAction, NoticeKind, Signal};

use super::{ignored, notice, two_minutes_after};
use crate::envelope::EventEnvelope;

/// States in which the instance is going or gone; `pending` and `running` are noise.
const LEAVING_STATES: &[&str] = &["stopping", "stopped", "shutting-down", "terminated"];

/// `EC2 Spot Instance Interruption Warning`. `resources[]` is not read: public samples put a zone in the region
/// slot of its ARN.
pub fn spot_interruption(event: &EventEnvelope) -> Signal {
    let mut signal = notice(event, NoticeKind::SpotInterruption);
    signal.instance_id = event.detail_str(&["instance-id"]).map(str::to_owned);
    signal.action = match event.detail_str(&["instance-action"]) {
        Some(a) if a.eq_ignore_ascii_case("terminate") => Some(InstanceAction::Terminate),
        Some(a) if a.eq_ignore_ascii_case("stop") => Some(InstanceAction::Stop),
        Some(a) if a.eq_ignore_ascii_case("hibernate") => Some(InstanceAction::Hibernate),
        _ => None,
    };
    signal.deadline = two_minutes_after(event.time);
    signal.capacity_type = Some(CapacityType::Spot);
    Signal::Interruption(signal)
}

pub fn rebalance_recommendation(event: &EventEnvelope) -> Signal {
    let mut signal = notice(event, NoticeKind::RebalanceRecommendation);
    signal.instance_id = event.detail_str(&["instance-id"]).map(str::to_owned);
    signal.capacity_type = Some(CapacityType::Spot);
    Signal::Interruption(signal)
}

pub fn state_change(event: &EventEnvelope) -> Signal {
    let state = event.detail_str(&["state"]).unwrap_or_default();
    if !LEAVING_STATES.contains(&state) {
        return ignored(event, IgnoreReason::NotActionable, format!("instance state {state:?} needs no action"));
    }
    let mut signal = notice(event, NoticeKind::StateChange);
    signal.instance_id = event.detail_str(&["instance-id"]).map(str::to_owned);
    signal.state = Some(state.to_owned());
    Signal::Interruption(signal)
}

/// Both spellings of the capacity-reservation interruption warning; the same two minutes as spot.
pub fn capacity_reservation_interruption(event: &EventEnvelope) -> Signal {
    let mut signal = notice(event, NoticeKind::CapacityReservation);
    signal.instance_id = event.detail_str(&["instance-id"]).map(str::to_owned);
    signal.deadline = two_minutes_after(event.time);
    signal.scope = event.detail_str(&["capacity-reservation-id"]).map(str::to_owned);
    Signal::Interruption(signal)
}
