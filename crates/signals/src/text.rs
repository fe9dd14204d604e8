//! Lenient reading of the free text AWS puts in events: Auto Scaling status messages, CloudTrail error
//! messages, ECS stop reasons. The wording is not a contract, so every fact is optional and each is found
//! independently: a changed sentence loses one fact, never the classification. [`time`] reads the times they
//! write.

pub mod time;

use std::sync::LazyLock;

use gameforge_contract::ShortageCause;
use regex::Regex;

/// What a free-text message says about a capacity failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextFacts {
    pub cause: Option<ShortageCause>,
    /// An AWS error code named in the text.
    pub error_code: Option<String>,
    pub instance_type: Option<String>,
    /// The zone the failed request asked for.
    pub availability_zone: Option<String>,
    /// Zones the text says still have capacity.
    pub available_zones: Vec<String>,
    /// The text is about spot capacity.
    pub spot: bool,
    pub instance_id: Option<String>,
}

static INSTANCE_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b([a-z][a-z0-9\-]*[0-9][a-z0-9\-]*\.(?:nano|micro|small|medium|large|[0-9]*xlarge|metal(?:-[0-9]+xl)?))\b",
    )
    .expect("valid regex")
});
// Regional zones (us-east-1a) and local zones (us-east-1-bos-1a).
static ZONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([a-z]{2}(?:-gov)?-[a-z]+-[0-9](?:-[a-z]+-[0-9])?[a-z])\b").expect("valid regex"));
static REQUESTED_ZONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)availability zone you requested \(([^)]+)\)").expect("valid regex"));
static ALTERNATIVES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)you can currently get .*?\bchoosing ([a-z0-9,\- ]+)").expect("valid regex"));
static INSTANCE_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(i-[0-9a-f]{8,17})\b").expect("valid regex"));

/// Error codes as they appear in messages, with what they mean for capacity. Quota codes first: a message that
/// names both is about the quota.
const CODES: &[(&str, ShortageCause)] = &[
    ("VcpuLimitExceeded", ShortageCause::Quota),
    ("MaxSpotInstanceCountExceeded", ShortageCause::Quota),
    ("InstanceLimitExceeded", ShortageCause::Quota),
    ("InsufficientInstanceCapacity", ShortageCause::InsufficientCapacity),
    ("InsufficientCapacity", ShortageCause::InsufficientCapacity),
    ("UnfulfillableCapacity", ShortageCause::InsufficientCapacity),
    ("InsufficientHostCapacity", ShortageCause::InsufficientCapacity),
    ("ReservationCapacityExceeded", ShortageCause::InsufficientCapacity),
];

/// Phrases, lower-cased, for messages that carry no code.
const PHRASES: &[(&str, ShortageCause)] = &[
    ("vcpu capacity than your current vcpu limit", ShortageCause::Quota),
    ("vcpu limit", ShortageCause::Quota),
    ("max spot instance count exceeded", ShortageCause::Quota),
    ("instance limit exceeded", ShortageCause::Quota),
    ("do not have sufficient", ShortageCause::InsufficientCapacity),
    ("no spot capacity available", ShortageCause::InsufficientCapacity),
    ("insufficient capacity", ShortageCause::InsufficientCapacity),
    ("capacity is unavailable", ShortageCause::InsufficientCapacity),
    ("capacity-not-available", ShortageCause::InsufficientCapacity),
    ("resource:", ShortageCause::PlacementFailure),
];

/// Reads every fact the text offers.
pub fn read(text: &str) -> TextFacts {
    let lower = text.to_ascii_lowercase();
    let code = CODES.iter().find(|(code, _)| text.contains(code));
    let cause = code
        .map(|(_, cause)| *cause)
        .or_else(|| PHRASES.iter().find(|(phrase, _)| lower.contains(phrase)).map(|(_, cause)| *cause));

    let available_zones: Vec<String> = ALTERNATIVES
        .captures(text)
        .map(|c| ZONE.find_iter(&c[1]).map(|m| m.as_str().to_owned()).collect())
        .unwrap_or_default();
    let availability_zone = REQUESTED_ZONE
        .captures(text)
        .and_then(|c| ZONE.find(&c[1]).map(|m| m.as_str().to_owned()))
        .or_else(|| ZONE.find_iter(text).map(|m| m.as_str().to_owned()).find(|zone| !available_zones.contains(zone)));

    TextFacts {
        cause,
        error_code: code.map(|(code, _)| (*code).to_owned()),
        instance_type: INSTANCE_TYPE.find(text).map(|m| m.as_str().to_owned()),
        availability_zone,
        available_zones,
        spot: text.contains("Spot") || lower.contains("spot instance") || lower.contains("maxspot"),
        instance_id: INSTANCE_ID.find(text).map(|m| m.as_str().to_owned()),
    }
}

/// Cuts a message to what is worth carrying in a signal.
pub fn shorten(text: &str) -> String {
    const LIMIT: usize = 512;
    let text = text.trim();
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ICE: &str = "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested \
        (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get g5.xlarge \
        capacity by not specifying an Availability Zone in your request or choosing us-east-1b, us-east-1c. Launching \
        EC2 instance failed.";

    #[test]
    fn reads_the_classic_shortage_sentence() {
        let facts = read(ICE);
        assert_eq!(facts.cause, Some(ShortageCause::InsufficientCapacity));
        assert_eq!(facts.instance_type.as_deref(), Some("g5.xlarge"));
        assert_eq!(facts.availability_zone.as_deref(), Some("us-east-1a"));
        assert_eq!(facts.available_zones, vec!["us-east-1b", "us-east-1c"]);
        assert!(!facts.spot);
    }

    #[test]
    fn the_sentence_without_alternatives_still_names_the_zone() {
        let facts = read(
            "We currently do not have sufficient g4dn.xlarge capacity in the Availability Zone you requested \
             (us-west-2d). Our system will be working on provisioning additional capacity.",
        );
        assert_eq!(facts.availability_zone.as_deref(), Some("us-west-2d"));
        assert!(facts.available_zones.is_empty());
    }

    #[test]
    fn a_reworded_message_keeps_what_it_still_says() {
        let facts = read("Insufficient capacity for p4d.24xlarge in eu-west-1-lhr-1a, try later");
        assert_eq!(facts.cause, Some(ShortageCause::InsufficientCapacity));
        assert_eq!(facts.instance_type.as_deref(), Some("p4d.24xlarge"));
        assert_eq!(facts.availability_zone.as_deref(), Some("eu-west-1-lhr-1a"));
    }

    #[test]
    fn quota_wording_is_not_a_shortage() {
        let facts = read(
            "You have requested more vCPU capacity than your current vCPU limit of 8 allows for the instance bucket \
             that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request \
             to request an adjustment to this limit. Launching EC2 instance failed.",
        );
        assert_eq!(facts.cause, Some(ShortageCause::Quota));
        assert_eq!(facts.instance_type, None, "aws.amazon must not read as an instance type");
    }

    #[test]
    fn spot_wording_is_recognised() {
        let facts =
            read("There is no Spot capacity available that matches your request. Launching EC2 instance failed.");
        assert_eq!(facts.cause, Some(ShortageCause::InsufficientCapacity));
        assert!(facts.spot);
        let facts =
            read("Could not launch Spot Instances. MaxSpotInstanceCountExceeded - Max spot instance count exceeded.");
        assert_eq!(facts.cause, Some(ShortageCause::Quota));
        assert_eq!(facts.error_code.as_deref(), Some("MaxSpotInstanceCountExceeded"));
    }

    #[test]
    fn finds_the_instance_of_a_lost_host() {
        assert_eq!(
            read("Host EC2 (instance i-0a1b2c3d4e5f67890) terminated.").instance_id.as_deref(),
            Some("i-0a1b2c3d4e5f67890")
        );
    }

    #[test]
    fn shortens_on_a_character_boundary() {
        let long = "é".repeat(400);
        let short = shorten(&long);
        assert!(short.len() <= 512 + '…'.len_utf8());
        assert!(short.ends_with('…'));
    }
}
