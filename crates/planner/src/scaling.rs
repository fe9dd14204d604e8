//! How many workers the fleet wants, from the job queue's backlog. Scaling out is immediate; scaling in is slow
//! on purpose, because a warm worker is worth minutes of model loading and a scarce GPU once given back may not
//! come back: the fleet shrinks only after demand has needed fewer workers for a whole `scale_in_delay`, and then
//! only to the most it needed over that time; one worker stays warm until nothing has been waiting or running
//! for `idle_before_zero`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::WorkerLimits;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    /// Jobs waiting on the queue.
    pub queued: u64,
    /// Jobs being worked on (received, not yet deleted): one busy worker each.
    pub in_flight: u64,
}

impl Demand {
    pub fn has_work(&self) -> bool {
        self.queued > 0 || self.in_flight > 0
    }

    pub fn plus(self, other: Demand) -> Demand {
        Demand {
            queued: self.queued.saturating_add(other.queued),
            in_flight: self.in_flight.saturating_add(other.in_flight),
        }
    }
}

/// What scaling remembers between reconciles (saved with the fleet's state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleMemory {
    /// The last reconcile that saw a job waiting or running.
    #[serde(default)]
    pub last_work_at: Option<DateTime<Utc>>,
    /// Since when demand has needed fewer workers than the fleet has, without a break.
    #[serde(default)]
    pub below_since: Option<DateTime<Utc>>,
    /// The most workers demand needed since `below_since`.
    #[serde(default)]
    pub peak_since: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScaleDecision {
    pub desired: u32,
    /// What the demand alone asks for.
    pub needed: u32,
    /// The memory to save for the next reconcile.
    pub memory: ScaleMemory,
}

/// Workers the demand alone asks for: one per job in flight (a worker runs one job at a time) plus one per full
/// `target_backlog_per_worker` jobs waiting, at least one while anything waits, within the fleet's limits.
pub fn needed_workers(limits: &WorkerLimits, demand: Demand) -> u32 {
    let per_worker = u64::from(limits.target_backlog_per_worker.max(1));
    let mut wanted = demand.in_flight.saturating_add(demand.queued / per_worker);
    if wanted == 0 && demand.queued > 0 {
        wanted = 1;
    }
    u32::try_from(wanted).unwrap_or(u32::MAX).clamp(limits.min, limits.max)
}

/// The fleet's size for this reconcile, given its `current` size and what scaling remembers.
pub fn desired_workers(
    limits: &WorkerLimits,
    demand: Demand,
    current: u32,
    memory: ScaleMemory,
    now: DateTime<Utc>,
) -> ScaleDecision {
    let needed = needed_workers(limits, demand);
    let last_work_at = if demand.has_work() { Some(now) } else { memory.last_work_at };
    let idle = last_work_at.is_none_or(|at| now - at >= limits.idle_before_zero.as_chrono());
    // A fleet with recent work keeps one warm worker (it never grows for this: the floor only holds a size).
    let warm = if idle { limits.min } else { limits.min.max(1).min(limits.max) };
    let target = needed.max(warm.min(current));
    let steady = |desired| ScaleDecision {
        desired,
        needed,
        memory: ScaleMemory { last_work_at, below_since: None, peak_since: 0 },
    };
    if target >= current {
        return steady(target);
    }
    if demand.queued > 0 {
        // Jobs are waiting: the fleet is not too big, whatever the arithmetic says.
        return steady(current);
    }
    if idle {
        // Nothing waited or ran for `idle_before_zero`: that is a longer proof than the scale-in delay.
        return steady(target);
    }
    let (below_since, peak) = match memory.below_since {
        Some(since) => (since, memory.peak_since.max(target)),
        None => (now, target),
    };
    if now - below_since >= limits.scale_in_delay.as_chrono() {
        return steady(peak.min(current));
    }
    ScaleDecision {
        desired: current,
        needed,
        memory: ScaleMemory { last_work_at, below_since: Some(below_since), peak_since: peak },
    }
}
