//! The ledger as plain data, keeping every promise of [`LedgerStore`](crate::ports::LedgerStore): a state saved
//! only over the version it was read at, a fleet lock with a lease, done markers. The simulator's world and the
//! engine's own tests hold one and answer the port from it, so that both keep the promises the same way.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gameforge_planner::ledger::{Interruption, LedgerView, OfferingBlock, QuotaBlock};

use crate::journal::Decisions;
use crate::ports::{LockOutcome, SaveOutcome};
use crate::state::FleetState;

#[derive(Debug, Clone, Default)]
pub struct MemoryLedger {
    pub view: LedgerView,
    pub fleet_state: Option<FleetState>,
    /// Who holds the fleet lock, and until when.
    pub lock: Option<(String, DateTime<Utc>)>,
    pub done: HashSet<String>,
    /// Oldest first, the newest [`MemoryLedger::DECISIONS`] only.
    pub decisions: Vec<Decisions>,
}

impl MemoryLedger {
    pub fn load(&self) -> (LedgerView, Option<FleetState>) {
        (self.view.clone(), self.fleet_state.clone())
    }

    pub fn put_block(&mut self, block: &OfferingBlock) {
        self.view.apply_block(block.clone());
    }

    pub fn put_quota(&mut self, block: &QuotaBlock) {
        self.view.apply_quota(block.clone());
    }

    pub fn put_interruptions(&mut self, region: &str, recent: &[Interruption]) {
        self.view.interruptions.insert(region.to_owned(), recent.to_vec());
    }

    /// Saves `state` if the stored one is still at `state.version - 1` (or absent for version 1).
    pub fn save_state(&mut self, state: &FleetState) -> SaveOutcome {
        let stored = self.fleet_state.as_ref().map_or(0, |s| s.version);
        if stored + 1 != state.version {
            return SaveOutcome::Conflict;
        }
        self.fleet_state = Some(state.clone());
        SaveOutcome::Saved
    }

    pub fn lock(&mut self, owner: &str, now: DateTime<Utc>, lease: Duration) -> LockOutcome {
        if let Some((holder, until)) = &self.lock
            && holder != owner
            && *until > now
        {
            return LockOutcome::HeldElsewhere { until: *until };
        }
        self.lock = Some((owner.to_owned(), now + chrono::Duration::from_std(lease).unwrap_or_default()));
        LockOutcome::Acquired
    }

    pub fn unlock(&mut self, owner: &str) {
        if self.lock.as_ref().is_some_and(|(holder, _)| holder == owner) {
            self.lock = None;
        }
    }

    pub fn is_done(&self, control_id: &str) -> bool {
        self.done.contains(control_id)
    }

    pub fn mark_done(&mut self, control_id: &str) {
        self.done.insert(control_id.to_owned());
    }

    /// A week of a busy fleet's decisions would be more than a long simulation needs in memory.
    const DECISIONS: usize = 1000;

    pub fn record_decisions(&mut self, decisions: &Decisions) {
        self.decisions.push(decisions.clone());
        let excess = self.decisions.len().saturating_sub(Self::DECISIONS);
        self.decisions.drain(..excess);
    }

    pub fn recent_decisions(&self, limit: usize) -> Vec<Decisions> {
        self.decisions.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minutes)
    }

    #[test]
    fn the_lock_is_held_for_its_lease_and_only_its_holder_frees_it() {
        let mut ledger = MemoryLedger::default();
        let lease = Duration::from_secs(90);
        assert_eq!(ledger.lock("a", at(0), lease), LockOutcome::Acquired);
        assert_eq!(
            ledger.lock("b", at(1), lease),
            LockOutcome::HeldElsewhere { until: at(0) + chrono::Duration::seconds(90) }
        );
        ledger.unlock("b");
        assert!(matches!(ledger.lock("b", at(1), lease), LockOutcome::HeldElsewhere { .. }), "not b's to free");
        assert_eq!(ledger.lock("b", at(2), lease), LockOutcome::Acquired, "a's lease lapsed");
    }

    #[test]
    fn a_state_is_saved_only_over_the_version_it_was_read_at() {
        let config = gameforge_planner::FleetConfig::from_json(
            &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json")).unwrap(),
        )
        .unwrap();
        let mut ledger = MemoryLedger::default();
        let mut state = FleetState::new(&config, at(0));
        state.version = 1;
        assert_eq!(ledger.save_state(&state), SaveOutcome::Saved);
        assert_eq!(ledger.save_state(&state), SaveOutcome::Conflict, "someone else saved version 1 first");
        state.version = 2;
        assert_eq!(ledger.save_state(&state), SaveOutcome::Saved);
    }
}
