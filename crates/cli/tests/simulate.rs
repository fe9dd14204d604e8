//! `gameforge simulate` on the example scenarios.

use std::process::Command;

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gameforge")).arg("simulate").args(args).output().unwrap()
}

fn scenario(name: &str) -> String {
    format!("{}/../../infra/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn prints_json_lines_then_the_summary() {
    let output = simulate(&[&scenario("us-east-1-shortage.json")]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 10);
    assert_eq!(lines.last().unwrap()["summary"]["final_region"], "us-west-2");
}

#[test]
fn summary_only_prints_one_line() {
    let output = simulate(&["--summary-only", &scenario("burst-then-idle.json")]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("{\"summary\":"));
}

#[test]
fn a_missing_scenario_exits_two_with_one_line() {
    let output = simulate(&["/nonexistent/scenario.json"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Writes a scenario (and the fleet file it names) where the test can find it.
fn extreme_scenario(name: &str, edit: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value)) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("simulate-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let read =
        |path: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() };
    let mut scenario = read(&scenario("burst-then-idle.json"));
    let mut fleet = read(&format!("{}/../../infra/fleet.json", env!("CARGO_MANIFEST_DIR")));
    edit(&mut scenario, &mut fleet);
    scenario["fleet"] = "fleet.json".into();
    std::fs::write(dir.join("fleet.json"), fleet.to_string()).unwrap();
    let path = dir.join("scenario.json");
    std::fs::write(&path, scenario.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

fn refused(path: &str) -> String {
    let output = simulate(&["--summary-only", path]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn extreme_scenario_values_exit_two_naming_the_bound_instead_of_panicking() {
    let path = extreme_scenario("rates", |scenario, _| {
        scenario["jobs"] = serde_json::json!({"per_minute": 1e300, "from": "0s"});
        scenario["duration"] = "100000000d".into();
        scenario["step"] = "9999999999999d".into();
        scenario["events"] = serde_json::json!([{"at": "213503982334d", "interrupt": {"region": "us-east-1"}}]);
    });
    let stderr = refused(&path);
    for expected in [
        "`jobs.per_minute` must be between 0 and 10000",
        "`duration` must be at most 30d",
        "`step` must be at most 1d",
        "`events[0].at` must be at most 30d",
    ] {
        assert!(stderr.contains(expected), "{expected} missing from {stderr}");
    }
    let path = extreme_scenario("overflowing-span", |scenario, _| {
        scenario["duration"] = "18446744073709551615s1s".into();
    });
    assert!(refused(&path).contains("is not a duration"));
}

#[test]
fn extreme_fleet_durations_exit_two_naming_the_bound_instead_of_panicking() {
    let path = extreme_scenario("fleet", |_, fleet| {
        fleet["ledger"]["shortage_ttl"] = "100000000d".into();
        fleet["ledger"]["shortage_ttl_max"] = "100000000d".into();
        fleet["migration"]["hysteresis"] = "9000000000000000s".into();
        fleet["workers"]["max"] = u32::MAX.into();
    });
    let stderr = refused(&path);
    for expected in [
        "ledger.shortage_ttl: must be at most 365d",
        "migration.hysteresis: must be at most 365d",
        "workers.max: must be at most 10000",
    ] {
        assert!(stderr.contains(expected), "{expected} missing from {stderr}");
    }
}
