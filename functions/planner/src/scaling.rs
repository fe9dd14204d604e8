//! How many workers the fleet wants, from the job queue's backlog.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::WorkerLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Demand {
    /// Jobs waiting on the queue.
    pub queued: u64,
    /// Jobs being worked on (received, not yet deleted): one busy worker each.
    pub in_flight: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScaleDecision {
    pub desired: u32,
    /// What the demand alone asks for.
    pub needed: u32,
    /// The new value of the placement's `last_busy_at`.
    pub last_busy_at: Option<DateTime<Utc>>,
}

/// One worker per job in flight (a worker runs one job at a time) plus one per full `target_backlog_per_worker`
/// jobs waiting, and at least one while anything waits. Scales out at once; scales in only after demand has stayed below the current size for
/// `idle_before_zero`, so that a lull between bursts does not throw away warm workers.
pub fn desired_workers(
    limits: &WorkerLimits,
    demand: Demand,
    current: u32,
    last_busy_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ScaleDecision {
    let per_worker = u64::from(limits.target_backlog_per_worker.max(1));
    let mut wanted = demand.in_flight.saturating_add(demand.queued / per_worker);
    if wanted == 0 && demand.queued > 0 {
        wanted = 1;
    }
    let needed = u32::try_from(wanted).unwrap_or(u32::MAX).clamp(limits.min, limits.max);
    if needed >= current {
        return ScaleDecision { desired: needed, needed, last_busy_at: Some(now) };
    }
    let idle_long_enough = last_busy_at.is_none_or(|busy| now - busy >= limits.idle_before_zero.as_chrono());
    if idle_long_enough {
        ScaleDecision { desired: needed, needed, last_busy_at: Some(now) }
    } else {
        ScaleDecision { desired: current, needed, last_busy_at }
    }
}
