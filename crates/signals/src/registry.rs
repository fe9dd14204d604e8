//! The one table that maps an event's `(source, detail-type)` to its parser. A new event type is one parser
//! and one row here; the EventBridge rules in `infra/` are checked against this table by the tests.

use gameforge_contract::Signal;

use crate::envelope::EventEnvelope;
use crate::parsers::{autoscaling, cloudtrail, ec2, ecs, health};

pub type Parser = fn(&EventEnvelope) -> Signal;

pub const PARSERS: &[(&str, &str, Parser)] = &[
    ("aws.autoscaling", "EC2 Instance Launch Unsuccessful", autoscaling::launch_unsuccessful),
    ("aws.ec2", "AWS API Call via CloudTrail", cloudtrail::api_call),
    ("aws.ecs", "ECS Service Action", ecs::service_action),
    ("aws.ecs", "ECS Task State Change", ecs::task_state_change),
    ("aws.ec2", "EC2 Spot Instance Interruption Warning", ec2::spot_interruption),
    ("aws.ec2", "EC2 Instance Rebalance Recommendation", ec2::rebalance_recommendation),
    ("aws.ec2", "EC2 Instance State-change Notification", ec2::state_change),
    // AWS has published both spellings; subscribe to both.
    ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning", ec2::capacity_reservation_interruption),
    (
        "aws.ec2",
        "EC2 Interruptible Capacity Reservation Instance Interruption Warning",
        ec2::capacity_reservation_interruption,
    ),
    ("aws.health", "AWS Health Event", health::event),
];

pub fn parser_for(source: &str, detail_type: &str) -> Option<Parser> {
    PARSERS.iter().find(|(s, d, _)| *s == source && *d == detail_type).map(|(_, _, parser)| *parser)
}
