//! The README's run command, end to end: `gameforge-local` plays the story through the whole system (the
//! emulator, both stacks, both functions, worker processes on the tiny model) and leaves the timeline, the
//! chart and every image behind.

use std::process::Command;

use support::binary;

mod support;

#[test]
fn the_story_moves_the_fleet_away_and_back_and_every_job_completes() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(binary("gameforge-local"))
        .args(["story", "--out"])
        .arg(out.path())
        .output()
        .expect("run gameforge-local");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    // The system's own decisions, in order: away from the shortage, around the interruption, back home.
    let position = |text: &str| stdout.find(text).unwrap_or_else(|| panic!("no {text:?} in\n{stdout}"));
    let away = position("MIGRATE us-east-1 → us-west-2 (exhausted)");
    let notice = position("AWS: spot interruption notice for");
    let handed_back = position("job poster-01 handed back to the queue");
    let rerun = position("job poster-01 started (delivery 2)");
    let home = position("MIGRATE us-west-2 → us-east-1 (return_home)");
    assert!(away < notice && notice < handed_back && handed_back < rerun && rerun < home, "{stdout}");
    assert!(stdout.contains("CloudTrail: CreateFleet in us-east-1 had"), "{stdout}");
    assert!(stdout.contains("→ signal capacity_unavailable g5.xlarge in us-east-1"), "{stdout}");
    assert!(stdout.contains("→ signal interruption spot_interruption of"), "{stdout}");
    // "story complete in N s: K/K jobs succeeded"
    let summary = stdout.lines().find(|l| l.starts_with("story complete in")).expect("the summary line");
    let tally = summary.split(": ").nth(1).and_then(|rest| rest.split(" jobs succeeded").next()).expect("K/N");
    let (succeeded, submitted) = tally.split_once('/').expect("K/N");
    let jobs: usize = submitted.parse().unwrap();
    assert_eq!(succeeded, submitted, "{stdout}");
    assert!(jobs >= 20, "10, then 6 and what trickled in, then 4: {stdout}");

    for file in ["timeline.txt", "timeline.svg", "timeline.html", "chart.json", "summary.txt"] {
        assert!(out.path().join(file).exists(), "{file} missing");
    }
    let images = std::fs::read_dir(out.path().join("images")).unwrap().count();
    assert_eq!(images, jobs);
    let chart: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("chart.json")).unwrap()).unwrap();
    let regions: Vec<&str> = chart["lanes"].as_array().unwrap().iter().filter_map(|l| l["region"].as_str()).collect();
    assert!(regions.contains(&"us-west-2") && regions.contains(&"us-east-1"), "{regions:?}");
    let released = chart["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["jobs"].as_array().unwrap())
        .filter(|j| j["outcome"] == "released")
        .count();
    assert!(released >= 1, "the interrupted job was handed back");
}
