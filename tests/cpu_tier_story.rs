//! The CPU tier's story, end to end: `gameforge-local shortage` deploys both stacks with a CPU tier, takes every
//! GPU away in every region, and submits small jobs (the tier may serve them) and larger ones (GPU only). The
//! tier must come on and serve exactly the small ones on its Fargate service, the larger ones must wait for GPUs
//! and be served by them once capacity is back, and the tier must be drained; no job bounces between workers.

use std::process::Command;

use support::binary;

mod support;

#[test]
fn with_no_gpu_anywhere_the_cpu_tier_serves_the_small_jobs_and_is_drained_when_gpus_return() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(binary("gameforge-local"))
        .args(["shortage", "--out"])
        .arg(out.path())
        .output()
        .expect("run gameforge-local shortage");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let position = |text: &str| stdout.find(text).unwrap_or_else(|| panic!("no {text:?} in\n{stdout}"));
    let on = position("CPU TIER ON (");
    let waiting = position("scene-01 is queued: waiting for a GPU (");
    let served = position("the CPU tier served every icon; the scenes wait for a GPU");
    assert!(waiting < served, "{stdout}");
    let back = position("AWS has g5.xlarge and g4dn.xlarge capacity again");
    let off = position("CPU TIER OFF (");
    let drained = position("GPU workers served the scenes, and the CPU tier is drained to zero");
    // The tier goes off once nothing eligible is left (or GPUs are back), and is drained by the end.
    assert!(on < served && served < back && back < off && back < drained, "{stdout}");
    let summary = stdout.lines().find(|l| l.starts_with("story complete in")).expect("the summary line");
    assert!(summary.ends_with("8/8 jobs succeeded"), "{summary}");

    let chart: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("chart.json")).unwrap()).unwrap();
    let lanes = chart["lanes"].as_array().unwrap();
    let jobs_on = |lifecycle: bool| -> Vec<String> {
        lanes
            .iter()
            .filter(|l| (l["lifecycle"] == "fargate") == lifecycle)
            .flat_map(|l| l["jobs"].as_array().unwrap())
            .filter(|j| j["outcome"] == "succeeded")
            .map(|j| j["job_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (mut on_cpu, on_gpu) = (jobs_on(true), jobs_on(false));
    on_cpu.sort();
    assert_eq!(on_cpu, ["icon-01", "icon-02", "icon-03", "icon-04", "icon-05", "icon-06"], "{stdout}");
    assert!(on_gpu.iter().all(|id| id.starts_with("scene-")), "{on_gpu:?}");
    assert_eq!(on_gpu.len(), 2, "{on_gpu:?}");
    assert_eq!(std::fs::read_dir(out.path().join("images")).unwrap().count(), 8);
}
