//! The example scenarios in `infra/scenarios/`, played through the executor's own logic; their summaries are
//! what the fleet is supposed to do.

use std::path::PathBuf;

use gameforge_contract::Tier;
use gameforge_simulator::{Summary, load, run};
use serde_json::Value;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/scenarios").join(name)
}

fn play(name: &str) -> (Summary, Vec<Value>) {
    let loaded = load(&scenario(name)).unwrap();
    let mut lines = Vec::new();
    let summary = run(&loaded, |line| lines.push(line.clone()));
    (summary, lines)
}

fn migrations(lines: &[Value]) -> Vec<(i64, String, String, String)> {
    lines
        .iter()
        .filter(|l| l["event"] == "migrate")
        .map(|l| {
            (
                l["t"].as_i64().unwrap(),
                l["from"].as_str().unwrap().to_owned(),
                l["to"].as_str().unwrap().to_owned(),
                l["reason"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_fleet_ends_in_us_west_2_while_us_east_1_is_short() {
    let (summary, lines) = play("us-east-1-shortage.json");
    assert_eq!(summary.final_region, "us-west-2");
    assert_eq!(summary.workers_by_region.keys().collect::<Vec<_>>(), vec!["us-west-2"]);
    assert_eq!(summary.migrations, 1);
    assert_eq!(migrations(&lines)[0].3, "exhausted");
    assert!(summary.time_to_first_capacity_s.unwrap() <= 300.0, "{summary:?}");
    assert!(summary.jobs_pending < 20, "the fleet keeps up: {summary:?}");
    assert_eq!(summary.on_demand_share, 0.0, "spot was there in us-west-2");
}

#[test]
fn the_fleet_returns_home_after_the_hysteresis_window_once_capacity_is_back() {
    let (summary, lines) = play("shortage-then-recovery.json");
    assert_eq!(summary.final_region, "us-east-1");
    assert_eq!(summary.workers_by_region.keys().collect::<Vec<_>>(), vec!["us-east-1"]);
    let moves = migrations(&lines);
    assert_eq!(moves.len(), 2, "{moves:?}");
    let (left, _, west, _) = &moves[0];
    assert_eq!(west, "us-west-2");
    let (back, _, home, reason) = &moves[1];
    assert_eq!((home.as_str(), reason.as_str()), ("us-east-1", "return_home"));
    assert!(*back >= 90 * 60, "not before home capacity returned at 90 minutes: {back}");
    // Home was healthy for a whole hysteresis window (30 minutes) before the fleet went back: no failure of its
    // offerings in the ledger within it.
    let last_home_failure = lines
        .iter()
        .filter(|l| l["event"] == "blocked" && l["offering"]["region"] == "us-east-1")
        .filter_map(|l| l["t"].as_i64())
        .filter(|t| t < back)
        .max()
        .unwrap();
    assert!(*back - last_home_failure >= 30 * 60, "home failed at {last_home_failure}, back at {back}");
    assert!(*back >= left + 30 * 60, "not within the 30-minute hysteresis");
    // The spot interruption in us-west-2 was handled: drained and replaced, its job not lost.
    assert!(lines.iter().any(|l| l["event"] == "interruption" && l["ours"] == true));
    assert_eq!(summary.interruptions, 1);
    assert!(summary.jobs_pending < 20, "{summary:?}");
}

#[test]
fn a_burst_scales_out_and_the_idle_fleet_scales_to_zero() {
    let (summary, lines) = play("burst-then-idle.json");
    assert!(summary.workers_by_region.is_empty(), "{summary:?}");
    assert_eq!(summary.jobs_completed, 270, "6 jobs a minute for 45 minutes, all done");
    assert_eq!(summary.jobs_pending, 0);
    assert_eq!(summary.migrations, 0);
    let peak = lines.iter().filter(|l| l["event"] == "scale").filter_map(|l| l["desired"].as_u64()).max().unwrap();
    assert!(peak >= 2, "the burst needed more than one worker");
    let zero = lines.iter().find(|l| l["event"] == "scale" && l["desired"] == 0).expect("scaled to zero");
    assert!(zero["t"].as_i64().unwrap() >= 60 * 60, "not before 15 idle minutes after the last job at 45: {zero}");
}

#[test]
fn one_flapping_zone_does_not_drive_the_fleet_out_of_a_healthy_region() {
    let (summary, lines) = play("flapping-zone.json");
    assert!(summary.interruptions >= 8, "the zone kept reclaiming: {summary:?}");
    assert_eq!(migrations(&lines), vec![], "the other zones are healthy (the old per-region count left three times)");
    assert_eq!(summary.final_region, "us-east-1");
    assert!(summary.jobs_pending < 30, "{summary:?}");
}

#[test]
fn short_everywhere_the_fleet_tours_once_then_stays_and_backs_off() {
    let (summary, lines) = play("short-everywhere.json");
    let moves = migrations(&lines);
    assert!(moves.len() <= 2, "one tour of the two other regions, not circles: {moves:?}");
    assert!(lines.iter().any(|l| l["event"] == "staying"), "the fleet says it stays");
    // Launch calls per hour: no more in the last hour than in the first (attempts decay, never grow).
    let per_hour =
        |hour: i64| lines.iter().filter(|l| l["event"] == "launch" && l["t"].as_i64().unwrap() / 3600 == hour).count();
    let (first, last) = (per_hour(0), per_hour(2));
    assert!(last <= first && last <= 12, "launch calls per hour: first {first}, last {last}");
    assert!(summary.alerts >= 1, "the operator is told: {summary:?}");
    assert_eq!(summary.jobs_completed, 0);
}

#[test]
fn a_steady_flow_keeps_its_warm_workers() {
    let (summary, lines) = play("steady-demand.json");
    let settled = 40 * 60;
    let shrinks: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "scale" && l["t"].as_i64().unwrap() > settled)
        .filter(|l| l["desired"].as_u64() < l["current"].as_u64())
        .collect();
    assert!(shrinks.is_empty(), "no scale-in under a steady flow once settled: {shrinks:?}");
    assert!(summary.jobs_pending < 20, "{summary:?}");
}

#[test]
fn an_interruption_storm_moves_the_fleet_to_the_best_scored_region() {
    let (summary, lines) = play("interruption-storm.json");
    let moves = migrations(&lines);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!((moves[0].2.as_str(), moves[0].3.as_str()), ("us-east-2", "interruption_rate"));
    assert_eq!(summary.final_region, "us-east-2");
    assert!(summary.interruptions >= 3);
}

#[test]
fn spot_short_at_home_sends_the_fleet_where_spot_is() {
    let (summary, _) = play("spot-shortage-home.json");
    assert_eq!(summary.final_region, "us-west-2");
    assert!(summary.on_demand_share <= 0.5, "{summary:?}");
}

#[test]
fn a_scenario_plays_the_same_every_time() {
    let (_, first) = play("shortage-then-recovery.json");
    let (_, second) = play("shortage-then-recovery.json");
    assert_eq!(first, second);
}

#[test]
fn every_line_is_an_object_with_a_time_and_the_summary_comes_last() {
    let (_, lines) = play("us-east-1-shortage.json");
    let (last, rest) = lines.split_last().unwrap();
    assert!(last.get("summary").is_some());
    assert!(rest.iter().all(|l| l["t"].is_i64() && l["source"].is_string() && l["event"].is_string()), "{rest:?}");
    for key in [
        "workers_by_region",
        "time_to_first_capacity_s",
        "launch_calls",
        "on_demand_share",
        "migrations",
        "jobs_completed",
        "jobs_pending",
    ] {
        assert!(last["summary"].get(key).is_some(), "summary lacks {key}");
    }
}

#[test]
fn a_broken_scenario_is_refused_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("gameforge-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let missing = write("missing.json", r#"{"fleet": "nowhere.json", "duration": "1h"}"#);
    assert!(load(&missing).unwrap_err().to_string().contains("nowhere.json"));
    let fleet = std::fs::read_to_string(scenario("../fleet.json")).unwrap();
    write("fleet.json", &fleet);
    let both = write(
        "both.json",
        r#"{"fleet": "fleet.json", "duration": "1h", "events": [{"at": "1m", "file": "x.json", "interrupt": {"region": "us-east-1"}}]}"#,
    );
    assert!(load(&both).unwrap_err().to_string().contains("events[0]"));
    let duration = write("duration.json", r#"{"fleet": "fleet.json", "duration": "an hour"}"#);
    assert!(load(&duration).unwrap_err().to_string().contains("an hour"));
}

#[test]
fn a_launch_only_shortage_takes_nothing_back_and_new_launches_go_elsewhere() {
    let (summary, lines) = play("spot-launch-shortage.json");
    assert_eq!(summary.interruptions, 1, "only the scripted warning: the shortage reclaims nothing: {summary:?}");
    assert!(lines.iter().all(|l| l["event"] != "spot_reclaimed" || l["t"].as_i64().unwrap() >= 40 * 60));
    assert_eq!(summary.migrations, 0, "other spot pools of the region are there: {summary:?}");
    // The replacement for the warned worker could not be a g5 spot during the shortage.
    let replacement = lines
        .iter()
        .find(|l| l["event"] == "launched" && l["t"].as_i64().unwrap() >= 40 * 60 && l["t"].as_i64().unwrap() < 90 * 60)
        .expect("a replacement launched");
    let failures = replacement["failures"].as_array().unwrap();
    assert!(failures.iter().all(|f| f["code"] == "InsufficientInstanceCapacity"), "{replacement}");
    assert!(summary.jobs_pending < 20, "{summary:?}");
}

#[test]
fn a_quota_error_in_the_synchronous_answer_blocks_the_bucket_alerts_and_moves_the_fleet() {
    let (summary, lines) = play("quota-at-home.json");
    let quota_blocks: Vec<&Value> = lines.iter().filter(|l| l["event"] == "quota_blocked").collect();
    assert_eq!(quota_blocks.len(), 1, "one block per bucket and call: {quota_blocks:?}");
    assert_eq!(quota_blocks[0]["error_code"], "VcpuLimitExceeded");
    assert!(lines.iter().any(|l| l["event"] == "alert" && l["kind"] == "quota"), "the operator is told");
    assert_eq!(migrations(&lines).first().map(|m| m.3.as_str()), Some("exhausted"));
    assert_ne!(summary.final_region, "us-east-1");
    assert!(summary.jobs_completed > 0, "{summary:?}");
}

#[test]
fn spot_fills_the_deepest_pool_first_as_price_capacity_optimized_does() {
    let (_, lines) = play("deep-spot-pool.json");
    let zones: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "worker_serving")
        .filter_map(|l| l["offering"].as_str()?.split('/').nth(1))
        .take(4)
        .collect();
    // Every launch call lists us-east-1a first; EC2 puts spot workers in the deep us-east-1b pool (8 free).
    assert_eq!(zones, vec!["us-east-1b"; 4]);
    let blocked_1a =
        lines.iter().any(|l| l["event"] == "blocked" && l["offering"]["availability_zone"] == "us-east-1a");
    assert!(!blocked_1a, "the shallow pool was never tried dry");
}

fn cpu_tier_events(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["event"] == "cpu_tier").collect()
}

#[test]
fn in_a_total_gpu_shortage_the_cpu_tier_serves_the_small_jobs_and_leaves_once_gpus_are_back() {
    let (summary, lines) = play("total-gpu-shortage.json");
    let tier = cpu_tier_events(&lines);
    let (first, last) = (tier.first().unwrap(), tier.last().unwrap());
    assert_eq!(first["entered"], "no_gpu_anywhere", "{first}");
    assert!(first["t"].as_i64().unwrap() <= 120, "on as soon as the tour of the regions failed: {first}");
    // GPUs come back at two hours: the tier goes off after GPU workers have served for `leave_after` (5 min).
    assert_eq!(last["left"], "gpu_back", "{last}");
    let left_at = last["t"].as_i64().unwrap();
    assert!((2 * 3600..2 * 3600 + 20 * 60).contains(&left_at), "{last}");
    let started = lines.iter().filter(|l| l["event"] == "cpu_worker_started").count();
    let stopped = lines.iter().filter(|l| l["event"] == "cpu_worker_stopped").count();
    assert_eq!(started, stopped, "every CPU worker stopped by the end");
    assert!(lines.iter().all(|l| l["event"] != "cpu_worker_started" || l["t"].as_i64().unwrap() < left_at));

    // Two small jobs a minute for three hours: the CPU served only those (GPU-only jobs never reach it), and
    // while no GPU existed it was the only one serving.
    let cpu = &summary.tiers[&Tier::Cpu];
    let gpu = &summary.tiers[&Tier::Gpu];
    assert!(cpu.jobs_completed >= 200 && cpu.jobs_completed <= 360, "{summary:?}");
    let first_gpu = lines.iter().find(|l| l["event"] == "worker_serving").unwrap()["t"].as_i64().unwrap();
    assert!(first_gpu >= 2 * 3600);
    assert!(gpu.jobs_completed > 0 && cpu.cost_per_image.unwrap() > 0.0 && gpu.cost_per_image.unwrap() > 0.0);
    // Every job is done or waiting, and none went round: the only job handed back is the one a stopping CPU
    // worker was running when the tier went off.
    assert_eq!(summary.jobs_completed + summary.jobs_pending, 4 * 180);
    assert!(summary.jobs_released <= 1, "{summary:?}");
    assert!(summary.jobs_pending_gpu_only <= summary.jobs_pending);
}

#[test]
fn without_the_cpu_tier_the_same_shortage_serves_nothing_for_two_hours() {
    let mut loaded = load(&scenario("total-gpu-shortage.json")).unwrap();
    // The two hours without GPUs only: once they return, they catch up either way.
    loaded.scenario.duration = gameforge_planner::Span::hours(2);
    let with = run(&loaded, |_| {});
    loaded.fleet.cpu_tier = None;
    let mut lines = Vec::new();
    let without = run(&loaded, |line| lines.push(line.clone()));
    assert!(cpu_tier_events(&lines).is_empty());
    assert!(!without.tiers.contains_key(&Tier::Cpu));
    assert_eq!(without.jobs_completed, 0);
    assert!(with.jobs_completed >= 200, "{with:?}");
}
