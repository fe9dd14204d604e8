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
