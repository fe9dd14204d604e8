//! The fleet configuration: one JSON file, read by the executor and by the simulator. `infra/fleet.json` is the
//! documented example.

use std::collections::{BTreeMap, BTreeSet};

use gameforge_contract::{CapacityType, S3Uri, Violation};
use serde::{Deserialize, Serialize};

use crate::cpu_tier::CpuTier;
use crate::duration::Span;
use crate::offering::Offering;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The fleet's name: the FIFO message group of its control jobs and the `gameforge:fleet` tag of its instances.
    pub fleet: String,
    pub home_region: String,
    /// Every region the fleet may run in, each with its stamp, in the order to fall back to (home included).
    pub regions: Vec<RegionStamp>,
    /// In order of preference.
    pub instance_types: Vec<InstanceTypeSpec>,
    /// In order of preference, e.g. `["spot", "on_demand"]`.
    pub capacity_types: Vec<CapacityType>,
    pub on_demand: OnDemandGuardrails,
    pub workers: WorkerLimits,
    #[serde(default)]
    pub rebalance_policy: RebalancePolicy,
    pub ledger: LedgerPolicy,
    pub migration: MigrationPolicy,
    pub retry: RetryPolicy,
    /// CPU workers for the jobs a CPU can serve while no GPU can be had; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_tier: Option<CpuTier>,
}

/// What the fleet needs in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionStamp {
    pub region: String,
    pub ecs_cluster: String,
    pub ecs_service: String,
    /// The worker task definition family.
    pub task_definition: String,
    /// The launch template (name) on the ECS-optimized GPU AMI that joins instances to the cluster.
    pub launch_template: String,
    /// One subnet per availability zone the fleet may use.
    pub subnets: BTreeMap<String, String>,
    /// Where this region's copy of the model weights lives; the stamp is not ready without it.
    pub model_location: S3Uri,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceTypeSpec {
    pub name: String,
    /// Expected throughput of one worker on this type.
    pub jobs_per_hour: f64,
    /// For the on-demand spend guardrail.
    pub on_demand_price_per_hour: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemandGuardrails {
    /// The largest share of the fleet that may run on demand (0 forbids on-demand, 1 allows an all on-demand fleet).
    pub max_share: f64,
    /// The most the on-demand part of the fleet may cost per hour; absent means no limit.
    #[serde(default)]
    pub max_hourly_spend: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerLimits {
    pub min: u32,
    pub max: u32,
    /// Queued plus running jobs one worker is expected to carry.
    pub target_backlog_per_worker: u32,
    /// How long nothing may wait or run before the last warm worker goes (down to `min`).
    pub idle_before_zero: Span,
    /// How long demand must need fewer workers than the fleet has before the fleet shrinks, to the most it needed
    /// over that time.
    #[serde(default = "default_scale_in_delay")]
    pub scale_in_delay: Span,
}

/// Ten minutes: longer than the lulls of a steady flow of jobs, shorter than paying for idle GPUs for long.
fn default_scale_in_delay() -> Span {
    Span::minutes(10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebalancePolicy {
    /// Rebalance recommendations are recorded, nothing more.
    #[default]
    Ignore,
    /// A recommended instance is replaced before it is interrupted.
    ReplaceEarly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerPolicy {
    /// How long an offering stays out after its first shortage; doubled on each repeated failure.
    pub shortage_ttl: Span,
    pub shortage_ttl_max: Span,
    /// How long a quota error keeps its capacity type out of a region; an operator must raise the quota.
    pub quota_ttl: Span,
    /// How far back interruptions count toward a region's interruption rate.
    pub interruption_window: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationPolicy {
    /// Interruptions within the window per worker in the region; at or above it the fleet leaves the region.
    pub max_interruption_rate: f64,
    /// Fewer interruptions than this never move the fleet, however small it is (one reclaimed worker of one is
    /// bad luck, not a pattern).
    #[serde(default = "default_min_interruptions")]
    pub min_interruptions: u32,
    /// The fleet moves back home no sooner than this after leaving it, and a region it left is not chosen again
    /// within this time.
    pub hysteresis: Span,
    /// No migration within this time of the previous one.
    pub cooldown: Span,
}

fn default_min_interruptions() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Backoff between acquisition rounds: exponential from `base`, capped at `cap`, with full jitter.
    pub base: Span,
    pub cap: Span,
}

/// The longest span a configuration may name: instants are computed from these spans (a block's end, the next
/// retry), and far beyond a year they would leave the calendar the clock can represent.
pub const MAX_SPAN: Span = Span(std::time::Duration::from_secs(365 * 86_400));
/// The most workers a fleet may ask for; counts of workers are added up in 32 bits.
pub const MAX_WORKERS: u32 = 10_000;
/// The largest throughput one worker may claim (a job a second); the simulator derives job durations from it.
pub const MAX_JOBS_PER_HOUR: f64 = 3_600.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("fleet configuration is not valid JSON: {0}")]
    NotJson(String),
    #[error("fleet configuration has {} problem(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Violation>),
}

impl FleetConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| ConfigError::NotJson(e.to_string()))?;
        let violations = config.violations();
        if violations.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(violations)) }
    }

    /// Every rule the configuration breaks, by field.
    pub fn violations(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                v.push(Violation::new(field, message));
            }
        };
        check(!self.fleet.trim().is_empty() && self.fleet.len() <= 64, "fleet", "must be 1 to 64 characters");
        check(!self.regions.is_empty(), "regions", "must name at least one region");
        check(
            self.regions.iter().any(|r| r.region == self.home_region),
            "home_region",
            "must be one of the configured regions",
        );
        let mut seen = BTreeSet::new();
        for (i, stamp) in self.regions.iter().enumerate() {
            check(seen.insert(stamp.region.as_str()), &format!("regions[{i}].region"), "appears twice");
            check(!stamp.subnets.is_empty(), &format!("regions[{i}].subnets"), "must name at least one zone's subnet");
            for (zone, subnet) in &stamp.subnets {
                check(
                    zone.starts_with(&stamp.region),
                    &format!("regions[{i}].subnets.{zone}"),
                    "is not a zone of this region",
                );
                check(subnet.starts_with("subnet-"), &format!("regions[{i}].subnets.{zone}"), "is not a subnet id");
            }
            for (field, value) in [
                ("ecs_cluster", &stamp.ecs_cluster),
                ("ecs_service", &stamp.ecs_service),
                ("task_definition", &stamp.task_definition),
                ("launch_template", &stamp.launch_template),
            ] {
                check(!value.trim().is_empty(), &format!("regions[{i}].{field}"), "must not be empty");
            }
        }
        check(!self.instance_types.is_empty(), "instance_types", "must name at least one instance type");
        let mut types = BTreeSet::new();
        for (i, spec) in self.instance_types.iter().enumerate() {
            check(types.insert(spec.name.as_str()), &format!("instance_types[{i}].name"), "appears twice");
            check(
                spec.name.contains('.'),
                &format!("instance_types[{i}].name"),
                "is not an instance type like g5.xlarge",
            );
            check(
                spec.jobs_per_hour > 0.0 && spec.jobs_per_hour <= MAX_JOBS_PER_HOUR,
                &format!("instance_types[{i}].jobs_per_hour"),
                &format!("must be positive and at most {MAX_JOBS_PER_HOUR}"),
            );
            check(
                spec.on_demand_price_per_hour >= 0.0,
                &format!("instance_types[{i}].on_demand_price_per_hour"),
                "must not be negative",
            );
        }
        check(!self.capacity_types.is_empty(), "capacity_types", "must name spot, on_demand or both");
        let unique: BTreeSet<_> = self.capacity_types.iter().map(|c| *c as u8).collect();
        check(unique.len() == self.capacity_types.len(), "capacity_types", "names a capacity type twice");
        check((0.0..=1.0).contains(&self.on_demand.max_share), "on_demand.max_share", "must be between 0 and 1");
        check(
            self.on_demand.max_hourly_spend.is_none_or(|s| s >= 0.0),
            "on_demand.max_hourly_spend",
            "must not be negative",
        );
        check(self.workers.max >= self.workers.min, "workers.max", "must be at least workers.min");
        check(self.workers.max > 0, "workers.max", "must be positive");
        check(self.workers.max <= MAX_WORKERS, "workers.max", &format!("must be at most {MAX_WORKERS}"));
        check(self.workers.target_backlog_per_worker > 0, "workers.target_backlog_per_worker", "must be positive");
        check(self.ledger.shortage_ttl > Span::ZERO, "ledger.shortage_ttl", "must be positive");
        check(
            self.ledger.shortage_ttl_max >= self.ledger.shortage_ttl,
            "ledger.shortage_ttl_max",
            "must be at least shortage_ttl",
        );
        check(self.ledger.quota_ttl > Span::ZERO, "ledger.quota_ttl", "must be positive");
        check(self.ledger.interruption_window > Span::ZERO, "ledger.interruption_window", "must be positive");
        check(self.migration.max_interruption_rate > 0.0, "migration.max_interruption_rate", "must be positive");
        check(self.retry.base > Span::ZERO, "retry.base", "must be positive");
        check(self.retry.cap >= self.retry.base, "retry.cap", "must be at least retry.base");
        for (field, span) in [
            ("workers.idle_before_zero", self.workers.idle_before_zero),
            ("workers.scale_in_delay", self.workers.scale_in_delay),
            ("ledger.shortage_ttl", self.ledger.shortage_ttl),
            ("ledger.shortage_ttl_max", self.ledger.shortage_ttl_max),
            ("ledger.quota_ttl", self.ledger.quota_ttl),
            ("ledger.interruption_window", self.ledger.interruption_window),
            ("migration.hysteresis", self.migration.hysteresis),
            ("migration.cooldown", self.migration.cooldown),
            ("retry.base", self.retry.base),
            ("retry.cap", self.retry.cap),
        ] {
            check(span <= MAX_SPAN, field, &format!("must be at most {MAX_SPAN}"));
        }
        if let Some(tier) = &self.cpu_tier {
            v.extend(tier.violations());
        }
        v
    }

    pub fn stamp(&self, region: &str) -> Option<&RegionStamp> {
        self.regions.iter().find(|r| r.region == region)
    }

    pub fn instance_type(&self, name: &str) -> Option<&InstanceTypeSpec> {
        self.instance_types.iter().find(|t| t.name == name)
    }

    /// Every offering the fleet may use in `region`, in order of preference: capacity type, then instance type,
    /// then zone.
    pub fn offerings(&self, region: &str) -> Vec<Offering> {
        let Some(stamp) = self.stamp(region) else { return Vec::new() };
        let mut out = Vec::new();
        for capacity_type in &self.capacity_types {
            for spec in &self.instance_types {
                for zone in stamp.subnets.keys() {
                    out.push(Offering::new(region, zone, &spec.name, *capacity_type));
                }
            }
        }
        out
    }

    /// The fleet's own offerings a shortage report names: a dimension it leaves out (an Auto Scaling spot
    /// shortage names a zone, not a type) widens to every value the fleet uses in it.
    pub fn offerings_named(
        &self,
        region: &str,
        instance_type: Option<&str>,
        availability_zone: Option<&str>,
        capacity_type: Option<CapacityType>,
    ) -> Vec<Offering> {
        self.offerings(region)
            .into_iter()
            .filter(|o| instance_type.is_none_or(|t| t == o.instance_type))
            .filter(|o| availability_zone.is_none_or(|z| z == o.availability_zone))
            .filter(|o| capacity_type.is_none_or(|c| c == o.capacity_type))
            .collect()
    }
}
