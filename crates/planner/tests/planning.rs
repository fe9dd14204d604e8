//! The planner's decisions on the documented example fleet (`infra/fleet.json`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gameforge_contract::CapacityType::{OnDemand, Spot};
use gameforge_planner::fleet::{Worker, WorkerState};
use gameforge_planner::ladder::{Limit, Skip, next_launch, on_demand_allowance};
use gameforge_planner::ledger::{BlockCause, LedgerView};
use gameforge_planner::placement::{
    MigrationReason, PlacementState, Unsuitable, choose_target, region_exhausted, should_leave, should_return_home,
    toured_in_vain,
};
use gameforge_planner::scaling::{Demand, ScaleMemory, desired_workers};
use gameforge_planner::{FleetConfig, Offering};

fn fleet() -> FleetConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json");
    FleetConfig::from_json(&std::fs::read(path).unwrap()).unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minutes)
}

fn block_everything(config: &FleetConfig, ledger: &mut LedgerView, region: &str, now: DateTime<Utc>) {
    for offering in config.offerings(region) {
        let block = config.ledger.block(None, &offering, BlockCause::Shortage, now);
        ledger.apply_block(block);
    }
}

fn worker(
    id: &str,
    region: &str,
    zone: &str,
    instance_type: &str,
    capacity: gameforge_contract::CapacityType,
) -> Worker {
    Worker {
        instance_id: id.into(),
        offering: Offering::new(region, zone, instance_type, capacity),
        state: WorkerState::Running,
        launched_at: at(0),
        draining_since: None,
    }
}

fn all_ready() -> HashMap<String, bool> {
    ["us-east-1", "us-west-2", "us-east-2"].iter().map(|r| (r.to_string(), true)).collect()
}

#[test]
fn the_example_configuration_is_valid_and_a_broken_one_says_where() {
    let config = fleet();
    assert_eq!(config.offerings("us-east-1").len(), 2 * 2 * 5);
    let mut broken: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json")).unwrap(),
    )
    .unwrap();
    broken["home_region"] = "eu-west-1".into();
    broken["on_demand"]["max_share"] = 1.5.into();
    broken["workers"]["min"] = 30.into();
    broken["regions"][1]["subnets"]["us-east-1a"] = "subnet-0abc".into();
    let error = FleetConfig::from_json(broken.to_string().as_bytes()).unwrap_err();
    let text = error.to_string();
    for field in ["home_region", "on_demand.max_share", "workers.max", "regions[1].subnets.us-east-1a"] {
        assert!(text.contains(field), "{field} missing from: {text}");
    }
}

#[test]
fn spans_beyond_a_year_and_absurd_sizes_are_refused_by_name_and_never_overflow() {
    let mut extreme: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/fleet.json")).unwrap(),
    )
    .unwrap();
    extreme["ledger"]["shortage_ttl"] = "100000000d".into();
    extreme["ledger"]["shortage_ttl_max"] = "213503982334d".into();
    extreme["retry"]["cap"] = "366d".into();
    extreme["workers"]["max"] = u32::MAX.into();
    extreme["instance_types"][0]["jobs_per_hour"] = 1e300.into();
    let text = FleetConfig::from_json(extreme.to_string().as_bytes()).unwrap_err().to_string();
    for expected in [
        "ledger.shortage_ttl: must be at most 365d",
        "ledger.shortage_ttl_max: must be at most 365d",
        "retry.cap: must be at most 365d",
        "workers.max: must be at most 10000",
        "instance_types[0].jobs_per_hour: must be positive and at most 3600",
    ] {
        assert!(text.contains(expected), "{expected} missing from: {text}");
    }
    extreme["ledger"]["shortage_ttl"] = "18446744073709551615s1s".into();
    let text = FleetConfig::from_json(extreme.to_string().as_bytes()).unwrap_err().to_string();
    assert!(text.contains("is not a duration"), "{text}");
}

#[test]
fn the_first_call_asks_for_spot_over_every_zone_and_type_in_preference_order() {
    let config = fleet();
    let next = next_launch(&config, &LedgerView::default(), &[], "us-east-1", 3, &[], at(0));
    let request = next.request.unwrap();
    assert_eq!((request.capacity_type, request.count), (Spot, 3));
    assert_eq!(request.overrides.len(), 10);
    assert_eq!(request.overrides[0].instance_type, "g5.xlarge");
    assert_eq!(request.overrides[0].priority, 0);
    assert_eq!(
        request.overrides.iter().filter(|o| o.instance_type == "g4dn.xlarge").map(|o| o.priority).max(),
        Some(1)
    );
    assert_eq!(request.overrides[0].subnet_id, "subnet-0e1a00000000000a1");
}

#[test]
fn offerings_in_the_ledger_are_left_out_of_the_call() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    let g5a = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", Spot);
    ledger.apply_block(config.ledger.block(None, &g5a, BlockCause::Shortage, at(0)));
    let request = next_launch(&config, &ledger, &[], "us-east-1", 1, &[], at(1)).request.unwrap();
    assert_eq!(request.overrides.len(), 9);
    assert!(!request.overrides.iter().any(|o| o.instance_type == "g5.xlarge" && o.availability_zone == "us-east-1a"));
    // Three minutes later the entry has expired and the offering is back.
    let request = next_launch(&config, &ledger, &[], "us-east-1", 1, &[], at(3)).request.unwrap();
    assert_eq!(request.overrides.len(), 10);
}

#[test]
fn after_spot_comes_on_demand_within_its_share() {
    let config = fleet();
    let workers: Vec<Worker> =
        (0..4).map(|i| worker(&format!("i-{i}"), "us-east-1", "us-east-1a", "g5.xlarge", Spot)).collect();
    let next = next_launch(&config, &LedgerView::default(), &workers, "us-east-1", 4, &[Spot], at(0));
    assert_eq!(next.skipped, vec![(Spot, Skip::Tried)]);
    let request = next.request.unwrap();
    // 8 workers after the launch, at most half on demand.
    assert_eq!((request.capacity_type, request.count), (OnDemand, 4));

    let mut with_on_demand = workers.clone();
    with_on_demand
        .extend((0..4).map(|i| worker(&format!("i-od{i}"), "us-east-1", "us-east-1b", "g4dn.xlarge", OnDemand)));
    let next = next_launch(&config, &LedgerView::default(), &with_on_demand, "us-east-1", 2, &[Spot], at(0));
    assert_eq!(next.request.unwrap().count, 1, "10 workers after, 5 on demand at most, 4 already");
}

#[test]
fn the_share_counts_the_fleet_that_will_run_in_the_region() {
    let config = fleet();
    // Four spot workers away from home do not make room for on-demand at home: they are about to go.
    let away: Vec<Worker> =
        (0..4).map(|i| worker(&format!("i-{i}"), "us-west-2", "us-west-2a", "g5.xlarge", Spot)).collect();
    let (allowance, limit) = on_demand_allowance(&config, &away, "us-east-1", 4, &["g5.xlarge"]);
    assert_eq!((allowance, limit), (2, Some(Limit::MaxShare)));
    let (allowance, _) = on_demand_allowance(&config, &away, "us-west-2", 4, &["g5.xlarge"]);
    assert_eq!(allowance, 4);
}

#[test]
fn a_fleet_of_one_gets_no_on_demand_under_a_half_share() {
    let config = fleet();
    let next = next_launch(&config, &LedgerView::default(), &[], "us-east-1", 1, &[Spot], at(0));
    assert!(next.request.is_none());
    assert_eq!(next.skipped[1], (OnDemand, Skip::Guardrail { limit: Limit::MaxShare }));
}

#[test]
fn the_spend_cap_binds_with_the_dearest_candidate() {
    let mut config = fleet();
    config.on_demand.max_share = 1.0;
    config.on_demand.max_hourly_spend = Some(3.5);
    let (allowance, limit) = on_demand_allowance(&config, &[], "us-east-1", 10, &["g5.xlarge", "g4dn.xlarge"]);
    assert_eq!((allowance, limit), (3, Some(Limit::MaxHourlySpend)), "3 × 1.006 ≤ 3.5 < 4 × 1.006");
    let (allowance, _) = on_demand_allowance(&config, &[], "us-east-1", 10, &["g4dn.xlarge"]);
    assert_eq!(allowance, 6);
}

#[test]
fn a_quota_error_takes_a_whole_capacity_type_out_of_the_region() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    let any_on_demand = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", OnDemand);
    ledger.apply_quota(config.ledger.block_quota(None, &any_on_demand.quota_bucket(), "VcpuLimitExceeded", at(0)));
    let next = next_launch(&config, &ledger, &[], "us-east-1", 4, &[Spot], at(1));
    assert!(next.request.is_none());
    assert_eq!(next.skipped[1], (OnDemand, Skip::AllBlocked));
    assert!(!region_exhausted(&config, &ledger, "us-east-1", at(1)), "spot is still possible");
}

#[test]
fn an_exhausted_region_is_left_for_the_best_ready_region() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    block_everything(&config, &mut ledger, "us-east-1", at(0));
    let placement = PlacementState::at_home(&config, at(0));
    assert_eq!(should_leave(&config, &ledger, &placement, 3, 3, at(1)), Some(MigrationReason::Exhausted));

    // us-west-2 has 16 offerings, us-east-2 has 12: without scores, more room wins.
    let target = choose_target(&config, &ledger, &placement, &all_ready(), &HashMap::new(), at(1)).unwrap();
    assert_eq!(target.region, "us-west-2");
    // A placement score outranks room.
    let scores = HashMap::from([("us-east-2".to_string(), 9u8), ("us-west-2".to_string(), 3u8)]);
    assert_eq!(choose_target(&config, &ledger, &placement, &all_ready(), &scores, at(1)).unwrap().region, "us-east-2");
    // A stamp that is not ready is never chosen.
    let mut ready = all_ready();
    ready.insert("us-west-2".into(), false);
    assert_eq!(
        choose_target(&config, &ledger, &placement, &ready, &HashMap::new(), at(1)).unwrap().region,
        "us-east-2"
    );
}

#[test]
fn the_region_just_left_is_excluded_even_after_its_ledger_entries_expire() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    block_everything(&config, &mut ledger, "us-east-1", at(0));
    let mut placement = PlacementState::at_home(&config, at(0));
    placement.migrate(&config, "us-west-2", MigrationReason::Exhausted, at(1));
    // us-west-2 runs dry too, 5 minutes later; us-east-1's 3-minute entries have long expired.
    block_everything(&config, &mut ledger, "us-west-2", at(6));
    assert!(!region_exhausted(&config, &ledger, "us-east-1", at(6)));
    let target = choose_target(&config, &ledger, &placement, &all_ready(), &HashMap::new(), at(6)).unwrap();
    assert_eq!(target.region, "us-east-2", "not back to the region just left");
    placement.migrate(&config, "us-east-2", MigrationReason::Exhausted, at(6));
    // From us-east-2, both regions left within the hysteresis window are excluded.
    block_everything(&config, &mut ledger, "us-east-2", at(7));
    let rejected = choose_target(&config, &ledger, &placement, &all_ready(), &HashMap::new(), at(7)).unwrap_err();
    assert!(rejected.contains(&("us-east-1".to_string(), Unsuitable::RecentlyLeft { until: at(31) })), "{rejected:?}");
    assert!(matches!(rejected.iter().find(|(r, _)| r == "us-west-2").unwrap().1, Unsuitable::RecentlyLeft { .. }));
}

#[test]
fn home_is_tried_again_only_after_the_hysteresis_window() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    block_everything(&config, &mut ledger, "us-east-1", at(0));
    let mut placement = PlacementState::at_home(&config, at(0));
    placement.migrate(&config, "us-west-2", MigrationReason::Exhausted, at(0));
    // The ledger forgets after 3 minutes, but the fleet stays away for 30.
    assert!(!should_return_home(&config, &ledger, &placement, at(10)));
    assert!(!should_return_home(&config, &ledger, &placement, at(29)));
    assert!(should_return_home(&config, &ledger, &placement, at(30)));
    // A probe that failed at home starts the window again: home must be healthy for 30 minutes after it, long
    // after the ledger's 3-minute entries have expired.
    block_everything(&config, &mut ledger, "us-east-1", at(30));
    assert!(!should_return_home(&config, &ledger, &placement, at(31)));
    assert!(!should_return_home(&config, &ledger, &placement, at(45)), "blocks expired, window not passed");
    assert!(should_return_home(&config, &ledger, &placement, at(60)));
    // One offering failing is a failure of home too.
    let one = Offering::new("us-east-1", "us-east-1c", "g4dn.xlarge", OnDemand);
    ledger.apply_block(config.ledger.block(None, &one, BlockCause::Shortage, at(55)));
    assert!(!should_return_home(&config, &ledger, &placement, at(60)));
    assert!(should_return_home(&config, &ledger, &placement, at(85)));
}

#[test]
fn a_home_left_for_its_interruptions_is_not_tried_until_they_age_out() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    for (minute, zone) in [(1, "us-east-1a"), (2, "us-east-1b"), (3, "us-east-1c")] {
        ledger.apply_interruption(&spot_g5(zone), at(minute), config.ledger.interruption_window.as_chrono());
    }
    let mut placement = PlacementState::at_home(&config, at(0));
    let reason = MigrationReason::InterruptionRate { interruptions: 3, counted: 3, workers: 4 };
    placement.migrate(&config, "us-east-2", reason, at(12));
    assert!(!should_return_home(&config, &ledger, &placement, at(45)), "hysteresis passed, interruptions still count");
    assert!(should_return_home(&config, &ledger, &placement, at(62)), "the first one left the one-hour window");
}

#[test]
fn many_interruptions_move_the_fleet_but_not_during_the_cooldown() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    let placement = PlacementState::at_home(&config, at(0));
    for (minute, zone) in [(1, "us-east-1a"), (2, "us-east-1b"), (3, "us-east-1c")] {
        ledger.apply_interruption(&spot_g5(zone), at(minute), config.ledger.interruption_window.as_chrono());
    }
    assert_eq!(should_leave(&config, &ledger, &placement, 4, 4, at(5)), None, "cooldown after arriving");
    assert_eq!(
        should_leave(&config, &ledger, &placement, 4, 4, at(12)),
        Some(MigrationReason::InterruptionRate { interruptions: 3, counted: 3, workers: 4 })
    );
    assert_eq!(should_leave(&config, &ledger, &placement, 7, 7, at(12)), None, "3 of 7 is under half");
    assert_eq!(should_leave(&config, &ledger, &placement, 4, 4, at(62)), None, "the first one left the window");
    let mut one = LedgerView::default();
    one.apply_interruption(&spot_g5("us-east-1a"), at(1), config.ledger.interruption_window.as_chrono());
    assert_eq!(
        should_leave(&config, &one, &placement, 1, 1, at(12)),
        None,
        "one interruption of one worker is bad luck"
    );
}

#[test]
fn one_pool_reclaimed_again_and_again_does_not_make_the_region_bad() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    let placement = PlacementState::at_home(&config, at(0));
    // A flapping pool: six reclaims in us-east-1a while the fleet of four keeps running elsewhere in the region.
    for minute in 1..=6 {
        ledger.apply_interruption(
            &spot_g5("us-east-1a"),
            at(minute * 5),
            config.ledger.interruption_window.as_chrono(),
        );
    }
    assert_eq!(should_leave(&config, &ledger, &placement, 4, 4, at(31)), None);
    // The same six spread over three zones are the region's trouble.
    let mut spread = LedgerView::default();
    for minute in 1..=6 {
        let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][minute as usize % 3];
        spread.apply_interruption(&spot_g5(zone), at(minute * 5), config.ledger.interruption_window.as_chrono());
    }
    assert!(should_leave(&config, &spread, &placement, 4, 4, at(31)).is_some());
}

#[test]
fn the_rate_is_over_the_fleets_size_not_over_the_workers_the_interruptions_left() {
    let config = fleet();
    let mut ledger = LedgerView::default();
    let placement = PlacementState::at_home(&config, at(0));
    for (minute, zone) in [(1, "us-east-1a"), (2, "us-east-1b"), (3, "us-east-1c")] {
        ledger.apply_interruption(&spot_g5(zone), at(minute), config.ledger.interruption_window.as_chrono());
    }
    // Three pools of a fleet of eight reclaimed, two workers running while the replacements boot: 3/8 < 1/2.
    assert_eq!(should_leave(&config, &ledger, &placement, 2, 8, at(12)), None);
}

fn spot_g5(zone: &str) -> Offering {
    Offering::new("us-east-1", zone, "g5.xlarge", Spot)
}

#[test]
fn scaling_out_is_immediate_and_follows_the_backlog() {
    let limits = fleet().workers;
    let demand = |queued| Demand { queued, in_flight: 0 };
    let none = ScaleMemory::default();
    let up = desired_workers(&limits, demand(30), 1, none, at(0));
    assert_eq!((up.desired, up.memory.last_work_at), (3, Some(at(0))), "30 waiting jobs, 8 per worker");
    assert_eq!(desired_workers(&limits, demand(3), 0, none, at(0)).desired, 1, "anything waiting needs a worker");
    assert_eq!(desired_workers(&limits, demand(10_000), 0, none, at(20)).desired, 20, "capped at max");
    let busy = desired_workers(&limits, Demand { queued: 2, in_flight: 6 }, 1, none, at(0));
    assert_eq!(busy.desired, 6, "six busy workers; two waiting jobs are not a full worker's backlog");
    assert_eq!(
        desired_workers(&limits, demand(0), 0, ScaleMemory { last_work_at: Some(at(0)), ..none }, at(1)).desired,
        0,
        "the warm worker is kept, never started for nothing"
    );
}

/// A reconcile a minute over a demand given per minute: the fleet's size after each.
fn play(demands: &[Demand]) -> Vec<u32> {
    let limits = fleet().workers;
    let (mut current, mut memory) = (0, ScaleMemory::default());
    demands
        .iter()
        .enumerate()
        .map(|(minute, demand)| {
            let decision = desired_workers(&limits, *demand, current, memory, at(minute as i64));
            (current, memory) = (decision.desired, decision.memory);
            current
        })
        .collect()
}

fn running(in_flight: u64) -> Demand {
    Demand { queued: 0, in_flight }
}

#[test]
fn a_steady_flow_with_momentary_dips_keeps_its_warm_workers() {
    // Four workers busy, with a worker or two free for a minute now and then, and a job waiting now and then
    // (the flow the old rule answered with 4 → 3 on the first dip and a cold boot minutes later).
    let flow: Vec<Demand> = (0..240)
        .map(|minute| match minute % 7 {
            3 => running(3),
            5 if minute % 2 == 0 => running(2),
            6 => Demand { queued: 1, in_flight: 3 },
            _ => running(4),
        })
        .collect();
    let sizes = play(&flow);
    assert!(sizes.iter().all(|size| *size == 4), "{sizes:?}");
}

#[test]
fn a_falling_demand_steps_down_only_after_each_delay_and_to_the_most_it_needed() {
    // 4 busy for 10 minutes, then 2 or 1 for 15 (the most: 2), then 1 for 15, then nothing.
    let mut flow = vec![running(4); 10];
    flow.extend((0..15).map(|m| running(if m % 3 == 0 { 2 } else { 1 })));
    flow.extend(vec![running(1); 15]);
    flow.extend(vec![running(0); 30]);
    let sizes = play(&flow);
    assert_eq!(sizes[9], 4);
    assert!(sizes[10..20].iter().all(|s| *s == 4), "no shrinking before ten minutes below: {:?}", &sizes[10..20]);
    assert_eq!(sizes[20], 2, "after ten minutes below, to the most needed since: {sizes:?}");
    // From minute 20 the fleet (2) is above the 1 needed from minute 25: ten more minutes after minute 26.
    let one = sizes.iter().position(|s| *s == 1).unwrap();
    assert!((30..=36).contains(&one), "one worker from minute {one}: {sizes:?}");
    // The last work was at minute 39: one warm worker until 15 minutes after it.
    let zero = sizes.iter().position(|s| *s == 0).unwrap();
    assert_eq!(zero, 39 + 15, "{sizes:?}");
}

#[test]
fn work_every_ten_minutes_keeps_a_warm_worker_and_fifteen_idle_minutes_end_it() {
    let mut flow: Vec<Demand> =
        (0..120).map(|minute| if minute % 10 == 0 { Demand { queued: 1, in_flight: 0 } } else { running(0) }).collect();
    let sizes = play(&flow);
    assert!(sizes.iter().all(|s| *s == 1), "{sizes:?}");
    flow.extend(vec![running(0); 30]);
    let sizes = play(&flow);
    assert_eq!(sizes.iter().position(|s| *s == 0), Some(110 + 15), "{sizes:?}");
}

#[test]
fn no_shrinking_while_jobs_wait() {
    // Waiting jobs under a full worker's backlog, on a fleet of 3: the arithmetic says 1, the queue says no.
    let mut flow = vec![running(3); 5];
    flow.extend(vec![Demand { queued: 2, in_flight: 0 }; 30]);
    let sizes = play(&flow);
    assert!(sizes.iter().all(|s| *s == 3), "{sizes:?}");
}

#[test]
fn a_fleet_that_toured_every_other_region_in_vain_stays_put() {
    let config = fleet();
    assert_eq!(config.regions.len(), 3);
    assert!(!toured_in_vain(&config, 0));
    assert!(!toured_in_vain(&config, 1), "one more region to try");
    assert!(toured_in_vain(&config, 2), "both other regions tried without a worker gained");
}

#[test]
fn a_shortage_report_widens_what_it_leaves_out_to_the_fleets_own_offerings() {
    let config = fleet();
    let zone_only = config.offerings_named("us-east-1", None, Some("us-east-1b"), Some(Spot));
    assert!(!zone_only.is_empty());
    assert!(zone_only.iter().all(|o| o.availability_zone == "us-east-1b" && o.capacity_type == Spot));
    assert_eq!(zone_only.len(), config.instance_types.len(), "every instance type of the fleet in that zone");
    let exact = config.offerings_named("us-east-1", Some("g5.xlarge"), Some("us-east-1b"), Some(OnDemand));
    assert_eq!(exact, vec![Offering::new("us-east-1", "us-east-1b", "g5.xlarge", OnDemand)]);
    assert!(config.offerings_named("eu-west-1", None, None, None).is_empty(), "not a region of the fleet");
}
