//! What an EC2 launch error means for the ladder.

use serde::Serialize;

use crate::ladder::LaunchRequest;
use crate::offering::Offering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchErrorKind {
    /// This offering cannot be had now: block it and try the next.
    Capacity,
    /// An account limit: block the quota bucket, alert an operator.
    Quota,
    /// The request itself is wrong (AMI, template, subnet, permission): stop, alert, never loop.
    Configuration,
    /// Anything else: try again later.
    Transient,
}

/// Classifies an EC2 error code (`Server.` and `Client.` prefixes, as CloudTrail writes them, are ignored).
pub fn classify(code: &str) -> LaunchErrorKind {
    let code =
        code.rsplit('.').next().filter(|_| code.starts_with("Server.") || code.starts_with("Client.")).unwrap_or(code);
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientHostCapacity"
        | "UnfulfillableCapacity"
        | "ReservationCapacityExceeded"
        | "InsufficientFreeAddressesInSubnet"
        | "Unsupported"
        | "SpotMaxPriceTooLow" => LaunchErrorKind::Capacity,
        "VcpuLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "InstanceLimitExceeded"
        | "MaxFleetCountExceeded"
        | "MaxSpotFleetRequestCountExceeded" => LaunchErrorKind::Quota,
        "RequestLimitExceeded" | "InternalError" | "InternalFailure" | "Unavailable" | "ServiceUnavailable" => {
            LaunchErrorKind::Transient
        }
        _ if code.starts_with("Invalid")
            || code.starts_with("Unauthorized")
            || code.starts_with("AuthFailure")
            || code.starts_with("MissingParameter")
            || code.starts_with("OptInRequired")
            || code.ends_with(".NotFound")
            || code.ends_with(".Malformed") =>
        {
            LaunchErrorKind::Configuration
        }
        _ => LaunchErrorKind::Transient,
    }
}

/// The offerings a launch error is about: the one it names, or, for an error of the whole call, every offering the
/// call asked for (EC2 could place none of them).
pub fn failed_offerings(request: &LaunchRequest, named: Option<&Offering>) -> Vec<Offering> {
    match named {
        Some(offering) => vec![offering.clone()],
        None => request
            .overrides
            .iter()
            .map(|o| Offering::new(&request.region, &o.availability_zone, &o.instance_type, request.capacity_type))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::LaunchOverride;
    use gameforge_contract::CapacityType;

    #[test]
    fn an_error_of_the_whole_call_is_about_every_offering_it_asked_for() {
        let request = LaunchRequest {
            region: "us-east-1".into(),
            launch_template: "lt".into(),
            capacity_type: CapacityType::Spot,
            count: 2,
            overrides: ["us-east-1a", "us-east-1b"]
                .iter()
                .map(|zone| LaunchOverride {
                    availability_zone: (*zone).into(),
                    instance_type: "g5.xlarge".into(),
                    subnet_id: "subnet-1".into(),
                    priority: 0,
                })
                .collect(),
        };
        let named = Offering::new("us-east-1", "us-east-1b", "g5.xlarge", CapacityType::Spot);
        assert_eq!(failed_offerings(&request, Some(&named)), vec![named.clone()]);
        assert_eq!(
            failed_offerings(&request, None),
            vec![Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::Spot), named]
        );
    }

    #[test]
    fn tells_shortages_quotas_and_mistakes_apart() {
        assert_eq!(classify("InsufficientInstanceCapacity"), LaunchErrorKind::Capacity);
        assert_eq!(classify("Server.InsufficientInstanceCapacity"), LaunchErrorKind::Capacity);
        assert_eq!(classify("VcpuLimitExceeded"), LaunchErrorKind::Quota);
        assert_eq!(classify("Client.MaxSpotInstanceCountExceeded"), LaunchErrorKind::Quota);
        for code in [
            "InvalidAMIID.NotFound",
            "InvalidLaunchTemplateName.NotFoundException",
            "UnauthorizedOperation",
            "InvalidParameterValue",
            "InvalidSubnetID.NotFound",
        ] {
            assert_eq!(classify(code), LaunchErrorKind::Configuration, "{code}");
        }
        assert_eq!(classify("RequestLimitExceeded"), LaunchErrorKind::Transient);
        assert_eq!(classify("SomethingNew"), LaunchErrorKind::Transient);
    }
}
