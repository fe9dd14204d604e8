use gameforge_contract::{CapacityType, IgnoreReason, Offering, ShortageCause, Signal, SignalSource};
use serde_json::Value;

use super::{capacity_type_named, find_key, find_str, ignored, shortage};
use crate::envelope::EventEnvelope;
use crate::text;

const LAUNCH_CALLS: &[&str] =
    &["RunInstances", "CreateFleet", "RequestSpotInstances", "RequestSpotFleet", "StartInstances"];

/// `AWS API Call via CloudTrail` for EC2 launch calls: a failed call carries `errorCode`; an instant fleet
/// succeeds as a whole and lists per-override errors in its response.
pub fn api_call(event: &EventEnvelope) -> Signal {
    let name = event.detail_str(&["eventName"]).unwrap_or_default();
    if !LAUNCH_CALLS.contains(&name) {
        return ignored(event, IgnoreReason::NotActionable, format!("{name} is not a launch call"));
    }
    let request = event.detail.get("requestParameters").unwrap_or(&Value::Null);
    match event.detail_str(&["errorCode"]) {
        Some(code) => failed_call(event, name, code, request),
        None if name == "CreateFleet" => fleet_errors(event, request),
        None => ignored(event, IgnoreReason::NotACapacityFailure, format!("{name} succeeded")),
    }
}

fn failed_call(event: &EventEnvelope, name: &str, code: &str, request: &Value) -> Signal {
    let message = event.detail_str(&["errorMessage"]).unwrap_or_default();
    // CloudTrail prefixes codes with the fault side (`Server.InsufficientInstanceCapacity`).
    let code = code.rsplit('.').next().unwrap_or(code);
    let from_code = text::read(code);
    let facts = text::read(message);
    let Some(cause) = from_code.cause.or(facts.cause).filter(|c| *c != ShortageCause::PlacementFailure) else {
        return ignored(event, IgnoreReason::NotACapacityFailure, format!("{name} failed with {code}: {message}"));
    };
    let mut signal = shortage(event, cause, SignalSource::Cloudtrail);
    signal.region = event.detail_str(&["awsRegion"]).unwrap_or(&event.region).to_owned();
    signal.instance_type = find_str(request, "instanceType").map(str::to_owned).or(facts.instance_type);
    signal.availability_zone = find_str(request, "availabilityZone").map(str::to_owned).or(facts.availability_zone);
    signal.capacity_type = requested_capacity_type(name, request).or(facts.spot.then_some(CapacityType::Spot));
    signal.error_code = Some(code.to_owned());
    signal.available_zones = facts.available_zones;
    signal.message = Some(text::shorten(message));
    Signal::CapacityUnavailable(signal)
}

fn requested_capacity_type(name: &str, request: &Value) -> Option<CapacityType> {
    match name {
        "RequestSpotInstances" | "RequestSpotFleet" => Some(CapacityType::Spot),
        "CreateFleet" => find_str(request, "DefaultTargetCapacityType").and_then(capacity_type_named),
        // RunInstances without market options buys on-demand capacity.
        _ => Some(find_str(request, "marketType").and_then(capacity_type_named).unwrap_or(CapacityType::OnDemand)),
    }
}

/// The per-override errors of an instant fleet, one offering each.
fn fleet_errors(event: &EventEnvelope, request: &Value) -> Signal {
    let response = event.detail.get("responseElements").unwrap_or(&Value::Null);
    let items: Vec<&Value> = match find_key(response, "errorSet") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(set @ Value::Object(_)) => match set.get("item") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(item) => vec![item],
            None => vec![set],
        },
        _ => Vec::new(),
    };
    let default_capacity = requested_capacity_type("CreateFleet", request);
    let failures: Vec<(ShortageCause, String, String, Offering)> = items
        .into_iter()
        .filter_map(|item| {
            let code = find_str(item, "errorCode").unwrap_or_default();
            let message = find_str(item, "errorMessage").unwrap_or_default();
            let facts = text::read(message);
            let cause = text::read(code).cause.or(facts.cause).filter(|c| *c != ShortageCause::PlacementFailure)?;
            let offering = Offering {
                instance_type: find_str(item, "instanceType").map(str::to_owned).or(facts.instance_type),
                availability_zone: find_str(item, "availabilityZone").map(str::to_owned).or(facts.availability_zone),
                capacity_type: find_str(item, "lifecycle").and_then(capacity_type_named).or(default_capacity),
            };
            Some((cause, code.to_owned(), message.to_owned(), offering))
        })
        .collect();
    let Some((cause, code, message, first)) = failures.first().cloned() else {
        return ignored(event, IgnoreReason::NotACapacityFailure, "CreateFleet reported no capacity errors");
    };
    let mut signal = shortage(event, cause, SignalSource::Fleet);
    signal.region = event.detail_str(&["awsRegion"]).unwrap_or(&event.region).to_owned();
    signal.instance_type = first.instance_type;
    signal.availability_zone = first.availability_zone;
    signal.capacity_type = first.capacity_type;
    signal.error_code = (!code.is_empty()).then_some(code);
    signal.available_zones = text::read(&message).available_zones;
    signal.message = Some(text::shorten(&message));
    signal.scope = find_str(response, "fleetId").map(str::to_owned);
    // One signal has one cause; offerings that failed for another cause in the same call are named in the
    // message rather than recorded under the wrong cause. The synchronous fleet response remains the primary
    // source for those.
    let (same, other): (Vec<_>, Vec<_>) = failures.into_iter().skip(1).partition(|(c, ..)| *c == cause);
    signal.other_offerings = same.into_iter().map(|(_, _, _, offering)| offering).collect();
    if !other.is_empty() {
        let note = format!(" (+{} offering(s) failed for another cause)", other.len());
        signal.message = Some(text::shorten(&format!("{message}{note}")));
    }
    Signal::CapacityUnavailable(signal)
}
