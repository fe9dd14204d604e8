//! What CloudTrail publishes to EventBridge for a launch call with capacity errors, built from the calls the
//! emulated EC2 answered. moto has no CloudTrail, so the local system plays it: the signal path then sees the
//! same `AWS API Call via CloudTrail` events it would see on AWS, beside the errors the executor reads from the
//! call's own answer.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use gameforge_contract::CapacityType;
use gameforge_localaws::LaunchCall;
use serde_json::{Value, json};

pub const SOURCE: &str = "aws.ec2";
pub const DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

fn lifecycle(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => "spot",
        CapacityType::OnDemand => "on-demand",
    }
}

fn timestamp(at: SystemTime) -> String {
    DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The `detail` of the event for `call`, or `None` where the call had no errors (CloudTrail records those too,
/// but the classifier has nothing to learn from them).
pub fn detail(call: &LaunchCall, event_id: &str) -> Option<Value> {
    if call.failed.is_empty() {
        return None;
    }
    let time = timestamp(call.at);
    let mut detail = json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/gameforge-executor/gameforge-executor",
            "accountId": "123456789012",
        },
        "eventTime": time,
        "eventSource": "ec2.amazonaws.com",
        "eventName": call.action,
        "awsRegion": call.region,
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "123456789012",
        "eventCategory": "Management",
    });
    match call.action.as_str() {
        "CreateFleet" => {
            let overrides = |items: &mut dyn Iterator<Item = (&gameforge_planner::Offering, &Option<String>)>| {
                items
                    .map(|(offering, subnet)| {
                        json!({
                            "instanceType": offering.instance_type,
                            "subnetId": subnet,
                            "availabilityZone": offering.availability_zone,
                        })
                    })
                    .collect::<Vec<_>>()
            };
            let errors: Vec<Value> = call
                .failed
                .iter()
                .map(|(offering, subnet, error)| {
                    json!({
                        "errorCode": error.code,
                        "errorMessage": error.message,
                        "lifecycle": lifecycle(offering.capacity_type),
                        "launchTemplateAndOverrides": {
                            "overrides": overrides(&mut std::iter::once((offering, subnet)))[0],
                        },
                    })
                })
                .collect();
            let instances: Vec<Value> = call
                .launched
                .iter()
                .map(|(offering, subnet, ids)| {
                    json!({
                        "lifecycle": lifecycle(offering.capacity_type),
                        "launchTemplateAndOverrides": {
                            "overrides": overrides(&mut std::iter::once((offering, subnet)))[0],
                        },
                        "instanceIds": {"item": ids},
                        "instanceType": offering.instance_type,
                    })
                })
                .collect();
            let all = call.launched.iter().map(|(o, s, _)| (o, s)).chain(call.failed.iter().map(|(o, s, _)| (o, s)));
            detail["requestParameters"] = json!({
                "CreateFleetRequest": {
                    "Type": "instant",
                    "TargetCapacitySpecification": {"DefaultTargetCapacityType": lifecycle(call.capacity_type)},
                    "LaunchTemplateConfigs": {"Overrides": overrides(&mut all.into_iter())},
                }
            });
            detail["responseElements"] = json!({
                "CreateFleetResponse": {
                    "errorSet": {"item": errors},
                    "fleetInstanceSet": {"item": instances},
                }
            });
        }
        _ => {
            // A failed RunInstances has one offering and no response; CloudTrail prefixes the code with the side
            // at fault.
            let (offering, subnet, error) = &call.failed[0];
            let mut request = json!({
                "instanceType": offering.instance_type,
                "instancesSet": {"items": [{"minCount": 1, "maxCount": 1}]},
            });
            match subnet {
                Some(subnet) => request["subnetId"] = json!(subnet),
                None => request["placement"] = json!({"availabilityZone": offering.availability_zone}),
            }
            if offering.capacity_type == CapacityType::Spot {
                request["instanceMarketOptions"] = json!({"marketType": "spot"});
            }
            detail["requestParameters"] = request;
            detail["errorCode"] = json!(format!("Server.{}", error.code));
            detail["errorMessage"] = json!(error.message);
            detail["responseElements"] = Value::Null;
        }
    }
    Some(detail)
}

#[cfg(test)]
mod tests {
    use gameforge_contract::{ShortageCause, Signal};
    use gameforge_localaws::AwsError;
    use gameforge_planner::Offering;

    use super::*;

    fn envelope(call: &LaunchCall) -> Vec<u8> {
        json!({
            "version": "0",
            "id": "e-1",
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": "123456789012",
            "time": timestamp(call.at),
            "region": call.region,
            "resources": [],
            "detail": detail(call, "ct-1").unwrap(),
        })
        .to_string()
        .into_bytes()
    }

    fn offering(zone: &str, instance_type: &str, capacity_type: CapacityType) -> Offering {
        Offering::new("us-east-1", zone, instance_type, capacity_type)
    }

    #[test]
    fn a_fleet_call_with_errors_classifies_as_the_offerings_that_failed() {
        let call = LaunchCall {
            action: "CreateFleet".into(),
            region: "us-east-1".into(),
            capacity_type: CapacityType::Spot,
            at: SystemTime::now(),
            launched: vec![(
                offering("us-east-1c", "g4dn.xlarge", CapacityType::Spot),
                Some("subnet-c".into()),
                vec!["i-1".into()],
            )],
            failed: vec![
                (
                    offering("us-east-1a", "g5.xlarge", CapacityType::Spot),
                    Some("subnet-a".into()),
                    AwsError::no_spot_capacity(),
                ),
                (
                    offering("us-east-1b", "g5.xlarge", CapacityType::Spot),
                    Some("subnet-b".into()),
                    AwsError::no_spot_capacity(),
                ),
            ],
        };
        let Signal::CapacityUnavailable(signal) = gameforge_signals::classify_json(&envelope(&call)).unwrap() else {
            panic!("not a capacity signal")
        };
        assert_eq!(signal.cause, ShortageCause::InsufficientCapacity);
        assert_eq!(
            (signal.instance_type.as_deref(), signal.availability_zone.as_deref(), signal.capacity_type),
            (Some("g5.xlarge"), Some("us-east-1a"), Some(CapacityType::Spot))
        );
        assert_eq!(signal.other_offerings.len(), 1);
        assert_eq!(signal.other_offerings[0].availability_zone.as_deref(), Some("us-east-1b"));
    }

    #[test]
    fn a_failed_run_instances_classifies_with_its_offering_and_a_call_without_errors_publishes_nothing() {
        let g5 = offering("us-east-1b", "g5.xlarge", CapacityType::OnDemand);
        let mut call = LaunchCall {
            action: "RunInstances".into(),
            region: "us-east-1".into(),
            capacity_type: CapacityType::OnDemand,
            at: SystemTime::now(),
            launched: Vec::new(),
            failed: vec![(
                g5.clone(),
                None,
                AwsError::insufficient_instance_capacity("g5.xlarge", "us-east-1b", &["us-east-1c"]),
            )],
        };
        let Signal::CapacityUnavailable(signal) = gameforge_signals::classify_json(&envelope(&call)).unwrap() else {
            panic!("not a capacity signal")
        };
        assert_eq!(
            (signal.instance_type.as_deref(), signal.availability_zone.as_deref(), signal.capacity_type),
            (Some("g5.xlarge"), Some("us-east-1b"), Some(CapacityType::OnDemand))
        );
        assert_eq!(signal.error_code.as_deref(), Some("InsufficientInstanceCapacity"));
        call.failed.clear();
        call.launched.push((g5, None, vec!["i-2".into()]));
        assert_eq!(detail(&call, "ct-2"), None);
    }
}
