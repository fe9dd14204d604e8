use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::Message;

/// What one EventBridge event means for the fleet. Fields the event does not reveal are `null`, never guessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schemars(title = "Signal", description = "The classification of one EventBridge event (contract version 1).")]
pub enum Signal {
    /// Capacity could not be had for an offering.
    CapacityUnavailable(CapacityShortage),
    /// An instance (or a task on it) is going away or has gone.
    Interruption(InterruptionNotice),
    /// Nothing to act on; acknowledged and counted.
    Ignored(IgnoredEvent),
}

impl Signal {
    pub fn event_id(&self) -> &str {
        match self {
            Signal::CapacityUnavailable(s) => &s.event_id,
            Signal::Interruption(n) => &n.event_id,
            Signal::Ignored(i) => &i.event_id,
        }
    }

    pub fn region(&self) -> &str {
        match self {
            Signal::CapacityUnavailable(s) => &s.region,
            Signal::Interruption(n) => &n.region,
            Signal::Ignored(i) => &i.region,
        }
    }

    /// The `kind` tag as it appears on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Signal::CapacityUnavailable(_) => "capacity_unavailable",
            Signal::Interruption(_) => "interruption",
            Signal::Ignored(_) => "ignored",
        }
    }
}

impl Message for Signal {
    const SCHEMA_NAME: &'static str = "signal";
}

/// An (instance type, availability zone, capacity type) combination EC2 sells.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Offering {
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    pub capacity_type: Option<CapacityType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityShortage {
    pub event_id: String,
    pub region: String,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    pub capacity_type: Option<CapacityType>,
    pub cause: ShortageCause,
    pub source: SignalSource,
    /// When the failure happened (the event's `time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// The AWS error code, when the event carries one (`InsufficientInstanceCapacity`, `VcpuLimitExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Zones AWS said still had capacity for this instance type ("You can currently get … choosing …").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub available_zones: Vec<String>,
    /// Further offerings that failed in the same call (an instant fleet reports one error per override).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_offerings: Vec<Offering>,
    /// The Auto Scaling group, ECS service or cluster the failure belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The event's own words, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CapacityShortage {
    /// The failed offering first, then the others of the same call.
    pub fn offerings(&self) -> Vec<Offering> {
        let first = Offering {
            instance_type: self.instance_type.clone(),
            availability_zone: self.availability_zone.clone(),
            capacity_type: self.capacity_type,
        };
        std::iter::once(first).chain(self.other_offerings.iter().cloned()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterruptionNotice {
    pub event_id: String,
    pub region: String,
    pub instance_id: Option<String>,
    pub notice: NoticeKind,
    /// When the instance goes away, when the event says or implies it (two minutes after a spot warning).
    pub deadline: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// What EC2 will do to the instance (spot warnings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<InstanceAction>,
    /// The instance state (state-change notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_type: Option<CapacityType>,
    /// Further instances named by the same event (an AWS Health event may list several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_instance_ids: Vec<String>,
    /// The ECS cluster or task the notice concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The event's own words or type code, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl InterruptionNotice {
    pub fn instance_ids(&self) -> Vec<Option<String>> {
        std::iter::once(self.instance_id.clone()).chain(self.other_instance_ids.iter().cloned().map(Some)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IgnoredEvent {
    pub event_id: String,
    pub region: String,
    pub reason: IgnoreReason,
    /// The event's `source` and `detail-type`, so ignored traffic can be counted by type.
    pub event_source: String,
    pub detail_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapacityType {
    Spot,
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShortageCause {
    /// EC2 has no capacity for the offering now; clears in minutes to hours.
    InsufficientCapacity,
    /// An account limit (vCPU, spot instance count): will not clear without an operator.
    Quota,
    /// ECS could not place a task on the instances it has.
    PlacementFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalSource {
    Autoscaling,
    Cloudtrail,
    EcsService,
    EcsTask,
    Fleet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    SpotInterruption,
    RebalanceRecommendation,
    StateChange,
    ScheduledChange,
    CapacityReservation,
    TaskStopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceAction {
    Terminate,
    Stop,
    Hibernate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    /// No parser is registered for this source and detail-type.
    UnsupportedEvent,
    /// A known event that needs no action (an instance starting, a task stopped by its service).
    NotActionable,
    /// A launch or placement failure that is not about capacity (a bad AMI, a missing permission).
    NotACapacityFailure,
}
