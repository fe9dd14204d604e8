//! The reliability run, shortened for CI (60 jobs, a worker killed every 10 s on average): jobs through the
//! whole local system while workers are killed, every AWS service throttles and fails in bursts, and events
//! arrive twice or malformed. Nothing may be lost. And its outage mode, shortened too.

use std::process::Command;

use support::binary;

mod support;

#[test]
fn a_short_reliability_run_loses_no_job_and_no_result_disagrees() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(binary("gameforge-local"))
        .args(["chaos", "--jobs", "60", "--seed", "3", "--kill-every", "10", "--timeout", "900"])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run gameforge-local chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let poison = report["failed_as_poison"].as_array().unwrap().len() as u64;
    assert_eq!(report["succeeded"].as_u64().unwrap() + poison, 60, "{stdout}");
    assert_eq!(report["lost"].as_array().unwrap().len(), 0, "{stdout}");
    assert_eq!(report["conflicting_results"].as_array().unwrap().len(), 0, "{stdout}");
    assert!(report["worker_kills"].as_u64().unwrap() >= 1, "the run killed workers: {stdout}");
    assert!(report["aws_faults_injected"].as_u64().unwrap() >= 5, "AWS failed often: {stdout}");
    assert_eq!(report["unannounced"].as_array().unwrap().len(), 0, "{stdout}");
    assert_eq!(report["worker_crashes"], 0, "{stdout}");
    assert_eq!(report["function_crashes"], 0, "{stdout}");
    assert_eq!(report["iam_denials"].as_array().unwrap().len(), 0, "{stdout}");
}

/// Outage mode, shortened for CI: 40 s without each AWS service in turn, then without all of them, while jobs
/// keep arriving. Nothing valid may be lost or dead-lettered, and service must come back after each outage.
#[test]
fn outages_of_every_service_lose_nothing_and_dead_letter_nothing_valid() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(binary("gameforge-local"))
        .args(["chaos", "--jobs", "40", "--seed", "5", "--outage", "40", "--timeout", "1500"])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run gameforge-local chaos --outage");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["succeeded"].as_u64().unwrap(), 40, "{stdout}");
    assert_eq!(report["failed_as_poison"].as_array().unwrap().len(), 0, "an outage is no job's fault: {stdout}");
    assert_eq!(report["valid_jobs_dead_lettered"], 0, "{stdout}");
    assert_eq!(report["valid_signals_dead_lettered"], 0, "{stdout}");
    assert_eq!(report["conflicting_results"].as_array().unwrap().len(), 0, "{stdout}");
    let outages: Vec<&serde_json::Value> =
        report["faults"].as_array().unwrap().iter().filter(|f| f["kind"] == "aws outage").collect();
    assert_eq!(outages.len(), 7, "each of six services, then all at once: {stdout}");
    assert!(outages.iter().all(|o| !o["recovered_after_s"].is_null()), "service came back after each: {stdout}");
}
