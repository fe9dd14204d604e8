//! The fleet as an operator asks about it (`gameforge fleet status`): where it runs and why, its workers and
//! backlog as the executor last saw them, what the ledger keeps out and until when, what operators asked for,
//! whether it may launch, and its last decisions. Built from what the ledger holds, so that it needs no access to
//! EC2 and reads the same wherever it is asked from.

use std::fmt;

use chrono::{DateTime, Utc};
use gameforge_planner::fleet::Worker;
use gameforge_planner::ledger::{BlockCause, LedgerView};
use gameforge_planner::placement::Departure;
use gameforge_planner::scaling::Demand;
use serde::Serialize;

use crate::journal::{Decisions, migration_words};
#[cfg(test)]
use crate::state::Seen;
use crate::state::{ConfigError, CpuTierState, FleetState, Overrides};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetStatus {
    pub fleet: String,
    pub now: DateTime<Utc>,
    /// Absent while the executor has never run for this fleet.
    pub fleet_state: Option<Placed>,
    pub blocked: Vec<BlockRow>,
    pub quota_blocks: Vec<QuotaRow>,
    /// Newest first.
    pub decisions: Vec<Decisions>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placed {
    pub active_region: String,
    pub since: DateTime<Utc>,
    /// How the fleet came to the active region: the departure from the region before it.
    pub arrived_from: Option<Departure>,
    pub desired: u32,
    pub launching: Launching,
    pub operator: Overrides,
    /// When the executor last saw the workers, and what it saw.
    pub seen_at: Option<DateTime<Utc>>,
    pub workers: Vec<Worker>,
    pub demand: Option<Demand>,
    pub demand_at: Option<DateTime<Utc>>,
    pub cpu_tier: CpuTierState,
}

/// Whether the executor launches now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "launching", rename_all = "snake_case")]
pub enum Launching {
    Allowed,
    Paused {
        by: String,
        reason: String,
        since: DateTime<Utc>,
    },
    /// A launch failed for the configuration; `gameforge fleet resume` lifts it once it is fixed.
    Stopped {
        error: ConfigError,
    },
    BackingOff {
        until: DateTime<Utc>,
        round: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockRow {
    pub offering: String,
    pub cause: BlockCause,
    pub failures: u32,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaRow {
    pub bucket: String,
    pub error_code: String,
    pub until: DateTime<Utc>,
}

impl FleetStatus {
    pub fn new(
        fleet: &str,
        view: &LedgerView,
        state: Option<&FleetState>,
        decisions: Vec<Decisions>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut blocked: Vec<BlockRow> = view
            .offerings
            .values()
            .filter(|b| b.until > now)
            .map(|b| BlockRow { offering: b.offering.key(), cause: b.cause, failures: b.failures, until: b.until })
            .collect();
        blocked.sort_by(|a, b| a.offering.cmp(&b.offering));
        let mut quota_blocks: Vec<QuotaRow> = view
            .quotas
            .values()
            .filter(|q| q.until > now)
            .map(|q| QuotaRow { bucket: q.bucket.key(), error_code: q.error_code.clone(), until: q.until })
            .collect();
        quota_blocks.sort_by(|a, b| a.bucket.cmp(&b.bucket));
        let fleet_state = state.map(|state| {
            let launching = if let Some(p) = &state.operator.paused {
                Launching::Paused { by: p.by.clone(), reason: p.reason.clone(), since: p.at }
            } else if let Some(error) = &state.config_error {
                Launching::Stopped { error: error.clone() }
            } else if let Some(until) = state.next_attempt_at.filter(|t| *t > now) {
                Launching::BackingOff { until, round: state.acquire_round }
            } else {
                Launching::Allowed
            };
            let seen = state.seen.as_ref();
            Placed {
                active_region: state.placement.active_region.clone(),
                since: state.placement.since,
                arrived_from: state.placement.departures.last().filter(|d| d.at == state.placement.since).cloned(),
                desired: state.desired,
                launching,
                operator: state.operator.clone(),
                seen_at: seen.map(|s| s.at),
                workers: seen.map(|s| s.workers.clone()).unwrap_or_default(),
                demand: seen.and_then(|s| s.demand),
                demand_at: seen.and_then(|s| s.demand_at),
                cpu_tier: state.cpu.clone(),
            }
        });
        Self { fleet: fleet.to_owned(), now, fleet_state, blocked, quota_blocks, decisions }
    }
}

/// `12s ago`, `in 8m`: how far a time is from now, coarsely.
fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let magnitude = seconds.unsigned_abs();
    let span = match magnitude {
        0..120 => format!("{magnitude}s"),
        120..7200 => format!("{}m", magnitude / 60),
        7200..172_800 => format!("{}h", magnitude / 3600),
        _ => format!("{}d", magnitude / 86_400),
    };
    if seconds >= 0 { format!("{span} ago") } else { format!("in {span}") }
}

fn stamp(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ({})", at.format("%Y-%m-%d %H:%M:%S UTC"), relative(at, now))
}

impl fmt::Display for FleetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.now;
        let Some(placed) = &self.fleet_state else {
            writeln!(f, "fleet {}: the executor has not run for it yet (no state in the ledger)", self.fleet)?;
            return Ok(());
        };
        match placed.seen_at {
            Some(at) => writeln!(f, "fleet {}, as the executor saw it at {}", self.fleet, stamp(at, now))?,
            None => writeln!(f, "fleet {}", self.fleet)?,
        }
        write!(f, "region     {} since {}", placed.active_region, stamp(placed.since, now))?;
        match &placed.arrived_from {
            Some(d) => writeln!(f, ", from {}: {}", d.region, migration_words(&d.reason))?,
            None => writeln!(f)?,
        }
        if let Some(pin) = &placed.operator.pinned {
            writeln!(f, "pinned     to {} by {} since {}", pin.region, pin.by, stamp(pin.at, now))?;
        }
        match &placed.launching {
            Launching::Allowed => writeln!(f, "launching  allowed")?,
            Launching::Paused { by, reason, since } => {
                writeln!(f, "launching  PAUSED by {by} since {}: {reason}", stamp(*since, now))?
            }
            Launching::Stopped { error } => writeln!(
                f,
                "launching  STOPPED by {} ({}) since {}; fix the configuration, then `gameforge fleet resume`",
                error.code,
                error.message,
                stamp(error.at, now)
            )?,
            Launching::BackingOff { until, round } => {
                writeln!(f, "launching  backing off after {round} short rounds, until {}", stamp(*until, now))?
            }
        }
        let count = |state| placed.workers.iter().filter(|w| w.state == state).count();
        use gameforge_planner::fleet::WorkerState::*;
        write!(
            f,
            "workers    {} running, {} pending, {} draining; {} desired",
            count(Running),
            count(Pending),
            count(Draining),
            placed.desired
        )?;
        match (placed.demand, placed.demand_at) {
            (Some(d), Some(at)) => {
                writeln!(f, "; backlog {} queued, {} in flight ({})", d.queued, d.in_flight, relative(at, now))?
            }
            _ => writeln!(f)?,
        }
        let tier = &placed.cpu_tier;
        match (&tier.memory.active, tier.memory.waiting_since) {
            (Some(on), _) => writeln!(
                f,
                "cpu tier   ON since {} ({}): {} workers in {}",
                stamp(on.since, now),
                wire(&on.reason),
                tier.desired,
                tier.region.as_deref().unwrap_or("no region yet")
            )?,
            (None, Some(since)) => {
                writeln!(f, "cpu tier   off; jobs it could serve waiting since {}", stamp(since, now))?
            }
            (None, None) => {}
        }
        let mut workers: Vec<&Worker> = placed.workers.iter().collect();
        workers.sort_by(|a, b| (a.offering.key(), &a.instance_id).cmp(&(b.offering.key(), &b.instance_id)));
        for w in workers {
            writeln!(
                f,
                "  {:<22} {:<40} {:<8} launched {}",
                w.instance_id,
                w.offering.key(),
                wire(&w.state),
                relative(w.launched_at, now)
            )?;
        }
        if self.blocked.is_empty() && self.quota_blocks.is_empty() {
            writeln!(f, "blocked    nothing")?;
        } else {
            writeln!(f, "blocked    {} offerings, {} quota buckets", self.blocked.len(), self.quota_blocks.len())?;
        }
        for b in &self.blocked {
            writeln!(
                f,
                "  {:<40} {} ({} in a row) until {}",
                b.offering,
                wire(&b.cause),
                b.failures,
                stamp(b.until, now)
            )?;
        }
        for q in &self.quota_blocks {
            writeln!(f, "  quota {:<34} {} until {}", q.bucket, q.error_code, stamp(q.until, now))?;
        }
        if !self.decisions.is_empty() {
            writeln!(f, "last decisions (`gameforge fleet explain` for more)")?;
            for d in &self.decisions {
                write_decisions(f, d, now)?;
            }
        }
        Ok(())
    }
}

/// One invocation's decisions in words: a heading line, then one line per event.
pub fn write_decisions(f: &mut impl fmt::Write, decisions: &Decisions, now: DateTime<Utc>) -> fmt::Result {
    writeln!(f, "  {} {} job {}", stamp(decisions.at, now), decisions.command, decisions.control_id)?;
    for entry in decisions.entries.iter().filter(|e| !matches!(e.event, crate::journal::Event::Job { .. })) {
        writeln!(f, "    {}", entry.event.describe())?;
    }
    Ok(())
}

fn wire(value: &impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, Event};
    use crate::state::Paused;
    use gameforge_contract::CapacityType;
    use gameforge_planner::Offering;
    use gameforge_planner::fleet::WorkerState;
    use gameforge_planner::placement::MigrationReason;

    fn at(minutes: i64) -> DateTime<Utc> {
        "2026-12-06T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minutes)
    }

    #[test]
    fn a_fleet_never_run_says_so() {
        let status = FleetStatus::new("sdxl", &LedgerView::default(), None, Vec::new(), at(0));
        assert!(status.to_string().contains("the executor has not run for it yet"));
    }

    #[test]
    fn status_says_where_why_what_runs_what_is_blocked_and_what_was_decided() {
        let config = gameforge_planner::FleetConfig::from_json(
            &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json")).unwrap(),
        )
        .unwrap();
        let home = config.home_region.clone();
        let away = config.regions.iter().find(|r| r.region != home).unwrap().region.clone();
        let mut state = FleetState::new(&config, at(0));
        state.placement.migrate(&config, &away, MigrationReason::Exhausted, at(5));
        state.desired = 2;
        state.operator.paused = Some(Paused { by: "alice".into(), reason: "incident 42".into(), at: at(8) });
        let offering = Offering::new(&away, &format!("{away}a"), "g5.xlarge", CapacityType::Spot);
        let worker = |id: &str, state| Worker {
            instance_id: id.into(),
            offering: offering.clone(),
            state,
            launched_at: at(6),
            draining_since: None,
        };
        state.seen = Some(Seen {
            at: at(9),
            workers: vec![worker("i-1", WorkerState::Running), worker("i-2", WorkerState::Pending)],
            demand: Some(Demand { queued: 12, in_flight: 2 }),
            demand_at: Some(at(9)),
        });
        let mut view = LedgerView::default();
        let short = Offering::new(&home, &format!("{home}a"), "g5.xlarge", CapacityType::Spot);
        view.apply_block(config.ledger.block(None, &short, BlockCause::Shortage, at(9)));
        let gone = Offering::new(&home, &format!("{home}b"), "g5.xlarge", CapacityType::Spot);
        view.apply_block(config.ledger.block(None, &gone, BlockCause::Shortage, at(-60)));
        let decisions = vec![Decisions {
            control_id: "schedule-1".into(),
            command: "reconcile".into(),
            at: at(5),
            entries: vec![Entry {
                at: at(5),
                event: Event::Migrate { from: home.clone(), to: away.clone(), reason: MigrationReason::Exhausted },
            }],
        }];

        let status = FleetStatus::new("sdxl", &view, Some(&state), decisions, at(10));
        let text = status.to_string();
        for expected in [
            format!("region     {away} since 2026-12-06 10:05:00 UTC (5m ago), from {home}: every allowed offering"),
            "launching  PAUSED by alice since 2026-12-06 10:08:00 UTC (2m ago): incident 42".into(),
            "workers    1 running, 1 pending, 0 draining; 2 desired; backlog 12 queued, 2 in flight (60s ago)".into(),
            format!("{home}/{home}a/g5.xlarge/spot"),
            "blocked    1 offerings, 0 quota buckets".into(),
            format!("moved the fleet {home} → {away}: every allowed offering here is blocked"),
        ] {
            assert!(text.contains(&expected), "{expected:?} not in\n{text}");
        }
        assert!(!text.contains(&format!("{home}b")), "an expired block is not shown:\n{text}");
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["fleet_state"]["launching"]["launching"], "paused");
        assert_eq!(json["blocked"][0]["cause"], "shortage");
        assert!(!text.contains("cpu tier"), "no tier line for a fleet whose tier never ran:\n{text}");

        state.cpu.desired = 3;
        state.cpu.region = Some(away.clone());
        state.cpu.memory.active = Some(gameforge_planner::cpu_tier::Activation {
            since: at(6),
            reason: gameforge_planner::cpu_tier::EnterReason::NoGpuAnywhere,
        });
        let text = FleetStatus::new("sdxl", &view, Some(&state), Vec::new(), at(10)).to_string();
        let expected =
            format!("cpu tier   ON since 2026-12-06 10:06:00 UTC (4m ago) (no_gpu_anywhere): 3 workers in {away}");
        assert!(text.contains(&expected), "{expected:?} not in\n{text}");
    }
}
