//! What the executor decided and did, one record each: logged as JSON by the Lambda function, printed as JSON
//! lines by the simulator, and inspected by the tests.

use chrono::{DateTime, Utc};
use gameforge_contract::{CapacityType, NoticeKind, OperatorAction};
use gameforge_planner::Offering;
use gameforge_planner::cpu_tier::{EnterReason, LeaveReason};
use gameforge_planner::fleet::DrainReason;
use gameforge_planner::ladder::Skip;
use gameforge_planner::ledger::BlockCause;
use gameforge_planner::placement::{MigrationReason, Unsuitable};
use gameforge_planner::scaling::Demand;
use serde::{Deserialize, Serialize};

use crate::ports::{AlertKind, LaunchFailure};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The control job that started this invocation.
    Job {
        control_id: String,
        command: String,
    },
    Scale {
        demand: Demand,
        current: u32,
        desired: u32,
    },
    Blocked {
        offering: Offering,
        cause: BlockCause,
        until: DateTime<Utc>,
    },
    QuotaBlocked {
        bucket: String,
        error_code: String,
        until: DateTime<Utc>,
    },
    Interruption {
        instance_id: String,
        region: String,
        notice: NoticeKind,
        ours: bool,
    },
    /// A notice that names no instance (a degraded event): nothing can be drained, so the fleet is checked
    /// against EC2 at once instead.
    UntiedInterruption {
        event_id: String,
        region: String,
        notice: NoticeKind,
    },
    Skipped {
        region: String,
        capacity_type: CapacityType,
        why: Skip,
    },
    Launch {
        region: String,
        capacity_type: CapacityType,
        count: u32,
        overrides: usize,
        client_token: String,
    },
    Launched {
        region: String,
        instances: Vec<String>,
        failures: Vec<LaunchFailure>,
    },
    LaunchFailed {
        region: String,
        reason: String,
    },
    Migrate {
        from: String,
        to: String,
        reason: MigrationReason,
    },
    NoTarget {
        from: String,
        rejected: Vec<(String, Unsuitable)>,
    },
    /// Short everywhere: the fleet stays where it is instead of touring the regions again.
    Staying {
        region: String,
        fruitless_migrations: u32,
    },
    ReturnHomeProbe {
        home: String,
    },
    Drain {
        instance_id: String,
        region: String,
        why: DrainCause,
    },
    Terminate {
        region: String,
        instances: Vec<String>,
    },
    ServiceSize {
        region: String,
        count: u32,
    },
    /// The CPU tier came on, went off, or changed size.
    CpuTier {
        current: u32,
        desired: u32,
        /// The any-tier queue the tier serves.
        eligible: Demand,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entered: Option<EnterReason>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        left: Option<LeaveReason>,
    },
    CpuServiceSize {
        region: String,
        count: u32,
    },
    Waiting {
        until: DateTime<Utc>,
        why: String,
    },
    Retry {
        round: u32,
        delay_s: f64,
    },
    Alert {
        kind: AlertKind,
        message: String,
    },
    Satisfied {
        region: String,
        workers: u32,
    },
    /// An operator's instruction, and what came of it.
    Operator {
        by: String,
        action: OperatorAction,
        /// False when the executor refused it (a region the fleet does not have).
        applied: bool,
        outcome: String,
    },
    /// The fleet would have moved, but an operator pinned it.
    Pinned {
        region: String,
        declined: MigrationReason,
    },
}

/// Why a worker was drained: the notice that announced it going away, or the fleet's own reason. Written as the
/// notice's or the reason's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DrainCause {
    Notice(NoticeKind),
    Fleet(DrainReason),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub entries: Vec<Entry>,
}

impl Journal {
    pub fn push(&mut self, at: DateTime<Utc>, event: Event) {
        self.entries.push(Entry { at, event });
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.entries.iter().map(|e| &e.event)
    }

    /// Whether the invocation only found the fleet as it should be (or waiting as before): nothing an operator
    /// asking "what did it decide?" wants to read, so it is not kept in the ledger.
    pub fn is_routine(&self) -> bool {
        self.events().all(|e| {
            matches!(
                e,
                Event::Job { .. }
                    | Event::Satisfied { .. }
                    | Event::ServiceSize { .. }
                    | Event::CpuServiceSize { .. }
                    | Event::Waiting { .. }
            )
        })
    }

    /// What the dashboard and the alarms count from one invocation.
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        let mut launching = None;
        for event in self.events() {
            match event {
                Event::Blocked { cause: BlockCause::Shortage, .. } => tally.capacity_shortages += 1,
                Event::QuotaBlocked { .. } => tally.quota_blocks += 1,
                Event::Migrate { .. } => tally.migrations += 1,
                Event::Interruption { ours: true, .. } => tally.interruptions += 1,
                Event::UntiedInterruption { .. } => tally.untied_interruptions += 1,
                Event::Launch { capacity_type, .. } => launching = Some(*capacity_type),
                Event::Launched { instances, .. } => match launching {
                    Some(CapacityType::OnDemand) => tally.launched_on_demand += instances.len() as u64,
                    Some(CapacityType::Spot) => tally.launched_spot += instances.len() as u64,
                    None => {}
                },
                Event::Scale { desired, .. } => tally.desired_workers = Some(*desired),
                _ => {}
            }
        }
        tally
    }
}

/// One invocation's journal as the ledger keeps it for operators (`gameforge fleet explain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    pub control_id: String,
    /// The control job's wire kind (`reconcile`, `operate`…).
    pub command: String,
    pub at: DateTime<Utc>,
    pub entries: Vec<Entry>,
}

impl Event {
    /// The event in words, for operators.
    pub fn describe(&self) -> String {
        match self {
            Event::Job { control_id, command } => format!("{command} job {control_id}"),
            Event::Scale { demand, current, desired } => format!(
                "desired workers {current} → {desired} ({} queued, {} in flight)",
                demand.queued, demand.in_flight
            ),
            Event::Blocked { offering, cause, until } => {
                format!("blocked {} ({}) until {}", offering.key(), wire(cause), clock(*until))
            }
            Event::QuotaBlocked { bucket, error_code, until } => {
                format!("quota block on {bucket} ({error_code}) until {}", clock(*until))
            }
            Event::Interruption { instance_id, region, notice, ours } => format!(
                "{} for {instance_id} in {region}{}",
                wire(notice),
                if *ours { "" } else { " (not a worker of this fleet)" }
            ),
            Event::UntiedInterruption { event_id, region, notice } => {
                format!("{} in {region} naming no instance (event {event_id}): fleet checked against EC2", wire(notice))
            }
            Event::Skipped { region, capacity_type, why } => {
                format!("skipped {} in {region}: {}", wire(capacity_type), skip_words(why))
            }
            Event::Launch { region, capacity_type, count, overrides, .. } => {
                format!("launch {count} {} in {region} over {overrides} offerings", wire(capacity_type))
            }
            Event::Launched { region, instances, failures } => {
                let mut text = format!("launched {} in {region}", instances.len());
                if !instances.is_empty() {
                    text.push_str(&format!(" ({})", instances.join(", ")));
                }
                for failure in failures {
                    let on = failure.offering.as_ref().map(|o| format!(" on {}", o.key())).unwrap_or_default();
                    text.push_str(&format!("; {}{on}", failure.code));
                }
                text
            }
            Event::LaunchFailed { region, reason } => format!("launch call in {region} failed: {reason}"),
            Event::Migrate { from, to, reason } => {
                format!("moved the fleet {from} → {to}: {}", migration_words(reason))
            }
            Event::NoTarget { from, rejected } => {
                let why: Vec<String> = rejected.iter().map(|(r, u)| format!("{r} {}", wire(u))).collect();
                format!("no region can take the fleet from {from} ({})", why.join(", "))
            }
            Event::Staying { region, fruitless_migrations } => format!(
                "short everywhere: staying in {region} after {fruitless_migrations} migrations that gained no worker"
            ),
            Event::ReturnHomeProbe { home } => format!("probing home ({home}) before returning"),
            Event::Drain { instance_id, region, why } => format!("drain {instance_id} in {region} ({})", wire(why)),
            Event::Terminate { region, instances } => format!("terminate {} in {region}", instances.join(", ")),
            Event::ServiceSize { region, count } => format!("service in {region} sized to {count}"),
            Event::CpuTier { current, desired, eligible, entered, left } => {
                let change = match (entered, left) {
                    (Some(EnterReason::NoGpuAnywhere), _) => "CPU tier on: no GPU offering left in any region; ",
                    (Some(EnterReason::EligibleJobsWaiting), _) => {
                        "CPU tier on: eligible jobs waited with no GPU worker to take them; "
                    }
                    (_, Some(LeaveReason::GpuBack)) => "CPU tier off: GPU workers are serving again; ",
                    (_, Some(LeaveReason::NoEligibleWork)) => "CPU tier off: nothing eligible waits or runs; ",
                    (None, None) => "",
                };
                format!(
                    "{change}CPU workers {current} → {desired} ({} eligible queued, {} in flight)",
                    eligible.queued, eligible.in_flight
                )
            }
            Event::CpuServiceSize { region, count } => format!("CPU service in {region} sized to {count}"),
            Event::Waiting { until, why } => format!("no launch until {}: {why}", clock(*until)),
            Event::Retry { round, delay_s } => format!("retry round {round} in {delay_s:.0} s"),
            Event::Alert { kind, message } => format!("alert ({}): {message}", wire(kind)),
            Event::Satisfied { region, workers } => format!("{workers} workers in {region}, as desired"),
            Event::Operator { by, outcome, .. } => format!("operator {by}: {outcome}"),
            Event::Pinned { region, declined } => {
                format!("pinned to {region}: not moving ({})", migration_words(declined))
            }
        }
    }
}

/// A time of day, as operators read the journal.
fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S").to_string()
}

fn skip_words(skip: &Skip) -> String {
    match skip {
        Skip::Tried => "tried already".into(),
        Skip::AllBlocked => "every offering is blocked".into(),
        Skip::Guardrail { limit } => format!("the on-demand guardrail ({}) allows no more", wire(limit)),
    }
}

pub fn migration_words(reason: &MigrationReason) -> String {
    match reason {
        MigrationReason::Exhausted => "every allowed offering here is blocked".into(),
        MigrationReason::InterruptionRate { interruptions, counted, workers } => {
            format!("{counted} of {interruptions} recent interruptions count against the region, for {workers} workers")
        }
        MigrationReason::ReturnHome => "home has capacity again".into(),
        MigrationReason::Requested => "an operator asked".into(),
    }
}

/// A name as the JSON writes it (`on_demand`, `spot_interruption`); for a tagged enum, its tag.
fn wire(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(serde_json::Value::Object(map)) => ["unsuitable", "reason", "skipped"]
            .iter()
            .find_map(|tag| map.get(*tag).and_then(|v| v.as_str()))
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// Counts of one invocation's journal, emitted as metrics (`gameforge`, dimension `function=executor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Offerings found short of capacity and blocked in the ledger.
    pub capacity_shortages: u64,
    pub quota_blocks: u64,
    pub migrations: u64,
    /// Interruption notices for the fleet's own instances.
    pub interruptions: u64,
    /// Interruption notices that named no instance.
    pub untied_interruptions: u64,
    pub launched_spot: u64,
    pub launched_on_demand: u64,
    pub desired_workers: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::LaunchFailure;

    #[test]
    fn entries_carry_the_contracts_and_the_planners_names() {
        let at = "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let drain = |why| Entry { at, event: Event::Drain { instance_id: "i-1".into(), region: "r".into(), why } };
        let json = |entry: Entry| serde_json::to_value(entry).unwrap();
        assert_eq!(json(drain(DrainCause::Notice(NoticeKind::SpotInterruption)))["why"], "spot_interruption");
        assert_eq!(json(drain(DrainCause::Fleet(DrainReason::ScaleIn)))["why"], "scale_in");
        let offering = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::Spot);
        let blocked = Entry { at, event: Event::Blocked { offering, cause: BlockCause::Interrupted, until: at } };
        assert_eq!(json(blocked)["cause"], "interrupted");
    }

    #[test]
    fn the_tally_counts_shortages_migrations_and_launches_by_capacity_type() {
        let at = Utc::now();
        let offering = Offering {
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
            instance_type: "g5.xlarge".into(),
            capacity_type: CapacityType::Spot,
        };
        let mut journal = Journal::default();
        journal.push(at, Event::Blocked { offering: offering.clone(), cause: BlockCause::Shortage, until: at });
        journal.push(at, Event::Blocked { offering: offering.clone(), cause: BlockCause::Shortage, until: at });
        // An interrupted spot offering is blocked too, but it is no shortage.
        journal.push(at, Event::Blocked { offering, cause: BlockCause::Interrupted, until: at });
        let launch = |capacity_type| Event::Launch {
            region: "us-west-2".into(),
            capacity_type,
            count: 2,
            overrides: 3,
            client_token: "t".into(),
        };
        let launched = |n: usize| Event::Launched {
            region: "us-west-2".into(),
            instances: (0..n).map(|i| format!("i-{i}")).collect(),
            failures: Vec::<LaunchFailure>::new(),
        };
        journal.push(at, launch(CapacityType::Spot));
        journal.push(at, launched(1));
        journal.push(at, launch(CapacityType::OnDemand));
        journal.push(at, launched(2));
        journal.push(
            at,
            Event::Migrate { from: "us-east-1".into(), to: "us-west-2".into(), reason: MigrationReason::Exhausted },
        );
        let tally = journal.tally();
        assert_eq!((tally.capacity_shortages, tally.migrations), (2, 1));
        assert_eq!((tally.launched_spot, tally.launched_on_demand), (1, 2));
        assert_eq!(tally.desired_workers, None);
    }
}
