//! Which region the fleet runs in: when to leave it, where to go, when to come home.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::FleetConfig;
use crate::ledger::LedgerView;

/// Where the fleet runs and where it has been.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementState {
    pub active_region: String,
    /// When the fleet arrived in the active region.
    pub since: DateTime<Utc>,
    /// Regions left recently, newest last; a region left within the hysteresis window is never a target.
    pub departures: Vec<Departure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departure {
    pub region: String,
    pub at: DateTime<Utc>,
    pub reason: MigrationReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MigrationReason {
    /// Every allowed offering of the region is in the ledger.
    Exhausted,
    /// Too many interruptions spread over the region's zones within the window (`counted` of `interruptions`), for
    /// the fleet's size there.
    InterruptionRate { interruptions: usize, counted: usize, workers: usize },
    /// Home has capacity again and the hysteresis window has passed.
    ReturnHome,
    /// An operator asked for it.
    Requested,
}

/// Why a region is not a migration target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "unsuitable", rename_all = "snake_case")]
pub enum Unsuitable {
    Active,
    RecentlyLeft { until: DateTime<Utc> },
    NotReady,
    Exhausted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub region: String,
    pub placement_score: Option<u8>,
    pub available_offerings: usize,
}

impl PlacementState {
    pub fn at_home(config: &FleetConfig, now: DateTime<Utc>) -> Self {
        Self { active_region: config.home_region.clone(), since: now, departures: Vec::new() }
    }

    /// Moves the fleet; the region left is remembered for the hysteresis window.
    pub fn migrate(&mut self, config: &FleetConfig, to: &str, reason: MigrationReason, now: DateTime<Utc>) {
        let left = std::mem::replace(&mut self.active_region, to.to_owned());
        self.departures.push(Departure { region: left, at: now, reason });
        let horizon = now - config.migration.hysteresis.as_chrono();
        // Keep at least the latest departure: returning home is measured from it.
        let keep_from = self.departures.len().saturating_sub(1);
        let mut index = 0;
        self.departures.retain(|d| {
            index += 1;
            index > keep_from || d.at >= horizon
        });
        self.since = now;
    }

    /// Until when `region` is excluded as a target, if it is.
    pub fn excluded_until(&self, config: &FleetConfig, region: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.departures
            .iter()
            .filter(|d| d.region == region)
            .map(|d| d.at + config.migration.hysteresis.as_chrono())
            .filter(|until| *until > now)
            .max()
    }
}

pub fn available_offerings(config: &FleetConfig, ledger: &LedgerView, region: &str, now: DateTime<Utc>) -> usize {
    config.offerings(region).iter().filter(|o| ledger.is_available(o, now)).count()
}

pub fn region_exhausted(config: &FleetConfig, ledger: &LedgerView, region: &str, now: DateTime<Utc>) -> bool {
    available_offerings(config, ledger, region, now) == 0
}

/// Whether the fleet should leave its active region now, with `workers_there` running there and `fleet_size`
/// wanted.
///
/// Interruptions make a region bad only when they are spread over its zones, and a capacity pool reclaimed again
/// and again counts at most twice (see [`LedgerView::interruption_pressure`]): one flapping pool or zone is left to
/// the ledger's blocks while the fleet runs in the others. The rate is taken over the fleet's size (the larger of
/// what runs and what is wanted), not over whatever workers the interruptions left running, so that it does not
/// climb as the region takes workers away.
pub fn should_leave(
    config: &FleetConfig,
    ledger: &LedgerView,
    placement: &PlacementState,
    workers_there: usize,
    fleet_size: usize,
    now: DateTime<Utc>,
) -> Option<MigrationReason> {
    let region = &placement.active_region;
    if region_exhausted(config, ledger, region, now) {
        return Some(MigrationReason::Exhausted);
    }
    // Interruption-driven moves respect the cooldown; an exhausted region is left at once.
    if now < placement.since + config.migration.cooldown.as_chrono() {
        return None;
    }
    let pressure = ledger.interruption_pressure(region, now - config.ledger.interruption_window.as_chrono());
    let workers = workers_there.max(fleet_size).max(1);
    let rate = pressure.counted as f64 / workers as f64;
    (pressure.counted >= config.migration.min_interruptions.max(1) as usize
        && rate >= config.migration.max_interruption_rate)
        .then_some(MigrationReason::InterruptionRate {
            interruptions: pressure.interruptions,
            counted: pressure.counted,
            workers,
        })
}

/// Whether the fleet has toured the other regions for capacity in vain: after as many migrations for want of
/// capacity as there are other regions, with no launch gaining a worker since, capacity is short everywhere, and
/// moving again would only go round in circles. The fleet then stays where it is and keeps trying there, its
/// attempts spaced by the retry backoff and the ledger's growing blocks (home is still probed once healthy).
pub fn toured_in_vain(config: &FleetConfig, fruitless_migrations: u32) -> bool {
    fruitless_migrations as usize >= config.regions.len().saturating_sub(1).max(1)
}

/// The best region to move to: ready, not exhausted, not left within the hysteresis window; ranked by spot
/// placement score where the API answered, then by offerings still available, then by configured order.
pub fn choose_target(
    config: &FleetConfig,
    ledger: &LedgerView,
    placement: &PlacementState,
    ready: &HashMap<String, bool>,
    scores: &HashMap<String, u8>,
    now: DateTime<Utc>,
) -> Result<Target, Vec<(String, Unsuitable)>> {
    let mut rejected = Vec::new();
    let mut candidates = Vec::new();
    for (order, stamp) in config.regions.iter().enumerate() {
        let region = &stamp.region;
        let verdict = if *region == placement.active_region {
            Some(Unsuitable::Active)
        } else if let Some(until) = placement.excluded_until(config, region, now) {
            Some(Unsuitable::RecentlyLeft { until })
        } else if !ready.get(region).copied().unwrap_or(false) {
            Some(Unsuitable::NotReady)
        } else if region_exhausted(config, ledger, region, now) {
            Some(Unsuitable::Exhausted)
        } else {
            None
        };
        match verdict {
            Some(reason) => rejected.push((region.clone(), reason)),
            None => candidates.push((order, region.clone())),
        }
    }
    candidates
        .into_iter()
        .map(|(order, region)| {
            let target = Target {
                placement_score: scores.get(&region).copied(),
                available_offerings: available_offerings(config, ledger, &region, now),
                region,
            };
            (target, order)
        })
        .max_by(|(a, a_order), (b, b_order)| {
            a.placement_score
                .unwrap_or(0)
                .cmp(&b.placement_score.unwrap_or(0))
                .then(a.available_offerings.cmp(&b.available_offerings))
                .then(b_order.cmp(a_order))
        })
        .map(|(target, _)| target)
        .ok_or(rejected)
}

/// Whether the fleet, away from home, should try to move back now: the hysteresis window since it left home has
/// passed, home has been healthy for a whole hysteresis window (no shortage, interruption or quota error of its
/// offerings in the ledger within it: a failed probe starts the window again), the cooldown since its last move
/// has passed, home is not exhausted in the ledger, and home's recent interruptions no longer reach the count that
/// can drive the fleet out (or it would leave again at once).
pub fn should_return_home(
    config: &FleetConfig,
    ledger: &LedgerView,
    placement: &PlacementState,
    now: DateTime<Utc>,
) -> bool {
    if placement.active_region == config.home_region {
        return false;
    }
    let left_home = placement.departures.iter().rev().find(|d| d.region == config.home_region).map(|d| d.at);
    let window = config.migration.hysteresis.as_chrono();
    let hysteresis_passed = left_home.is_none_or(|at| now >= at + window);
    let healthy_for_the_window = ledger.last_failure_in(&config.home_region).is_none_or(|at| now >= at + window);
    let cooled_down = now >= placement.since + config.migration.cooldown.as_chrono();
    let calm =
        ledger.interruption_pressure(&config.home_region, now - config.ledger.interruption_window.as_chrono()).counted
            < config.migration.min_interruptions.max(1) as usize;
    hysteresis_passed
        && healthy_for_the_window
        && cooled_down
        && calm
        && !region_exhausted(config, ledger, &config.home_region, now)
}
