//! Decision latency against the emulator: from a control job handed to the executor to its launch call arriving
//! at EC2, and the whole invocation. Run: `cargo bench -p executor --bench decision_latency`.

use std::time::{Duration, Instant};

use gameforge_contract::ControlCommand;
use gameforge_engine::Handled;

#[path = "../tests/support/mod.rs"]
mod support;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<34} n={:<3} p50 {:>8.2?}  p95 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.95),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    let rig = support::rig(&[("us-east-1", &["us-east-1a", "us-east-1b", "us-east-1c"], true)]).await;
    let executor = rig.executor("bench");
    rig.add_jobs(8).await;
    rig.reconcile(&executor, "warm-up").await;
    let ec2 = aws_sdk_ec2::Client::new(&rig.config);
    let mut to_launch = Vec::new();
    let mut whole = Vec::new();
    for round in 0..50 {
        // Take the worker away, as an interruption would, so that every round has a launch to make.
        for (id, ..) in rig.instances("us-east-1").await {
            ec2.terminate_instances().instance_ids(id).send().await.unwrap();
        }
        let job = rig.job(
            &format!("bench-{round}"),
            ControlCommand::AcquireCapacity { round: 0, clear_errors: false, reason: "bench".into() },
        );
        let started = Instant::now();
        let handled = executor.handle(&job).await.unwrap();
        whole.push(started.elapsed());
        assert!(matches!(handled, Handled::Done(_)));
        let launch = rig
            .emulator
            .faults()
            .requests()
            .into_iter()
            .filter(|r| r.action.as_deref() == Some("CreateFleet") && r.received_at >= started)
            .map(|r| r.received_at)
            .min()
            .expect("a launch call");
        to_launch.push(launch - started);
    }
    println!("executor (release build) against the emulator through the fault injector; one region, a fleet of one");
    summary("control job → CreateFleet received", to_launch);
    summary("whole invocation", whole);
}
