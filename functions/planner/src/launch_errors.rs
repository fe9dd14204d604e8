//! What an EC2 launch error means for the ladder.

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
