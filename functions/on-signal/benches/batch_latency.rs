//! `on-signal` against the emulator, through the Lambda runtime API, the way Lambda runs it.
//! Run: `cargo bench -p on-signal --bench batch_latency` (release build of the function). Prints:
//! - cold start: process spawn to the function's first request for work, over 20 starts;
//! - batch latency: invocation of a 10-record SQS batch (classify, claim in DynamoDB, send to the FIFO queue,
//!   complete), over 200 batches of fresh events, the control queue emptied between batches;
//! - the size of the binary measured.

use std::path::Path;
use std::time::Duration;

use gameforge_localaws::{Deployment, Emulator, LambdaHost, drain_queue, tools};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_on-signal");
const SAMPLES: &[&str] = &[
    "autoscaling/launch-unsuccessful-insufficient-capacity.json",
    "cloudtrail/run-instances-insufficient-capacity.json",
    "cloudtrail/create-fleet-instant-errors.json",
    "ecs/service-task-placement-failure-gpu.json",
    "ecs/task-stopped-host-terminated.json",
    "ec2/spot-interruption-warning-terminate.json",
    "ec2/rebalance-recommendation.json",
    "ec2/state-change-shutting-down.json",
    "health/scheduled-change-instance-retirement.json",
    "ec2/state-change-running.json",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<28} n={:<4} mean {:>8.2?}  p50 {:>8.2?}  p95 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        samples.len(),
        mean,
        percentile(&samples, 0.50),
        percentile(&samples, 0.95),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn batch(round: usize, events: &[Value]) -> Value {
    json!({"Records": events.iter().enumerate().map(|(i, event)| {
        let mut event = event.clone();
        // Fresh ids, so that every round is real work rather than duplicates.
        event["id"] = json!(format!("bench-{round}-{i}-{}", event["id"].as_str().unwrap_or_default()));
        json!({
            "messageId": format!("m-{round}-{i}"), "receiptHandle": format!("r-{round}-{i}"), "body": event.to_string(),
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gameforge-signals",
            "awsRegion": "us-east-1"
        })
    }).collect::<Vec<_>>()})
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let emulator = Emulator::start().expect("emulator");
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gameforge").await.expect("deploy");
    let mut env = emulator.env();
    env.extend(deployment.function_env(&config, "on-signal").await.expect("function environment"));
    env.push(("RUST_LOG".into(), "warn".into()));

    let mut cold = Vec::new();
    for _ in 0..20 {
        let host = LambdaHost::start(Path::new(BINARY), "on-signal", &env).expect("start");
        cold.push(host.wait_ready(Duration::from_secs(30)).await.expect("ready"));
    }

    let events: Vec<Value> = SAMPLES
        .iter()
        .map(|path| {
            let text = std::fs::read(tools::repo_root().join("events").join(path)).expect("sample");
            serde_json::from_slice(&text).expect("json")
        })
        .collect();
    let host = LambdaHost::start(Path::new(BINARY), "on-signal", &env).expect("start");
    host.wait_ready(Duration::from_secs(30)).await.expect("ready");
    for round in 0..10 {
        host.invoke(&batch(1_000_000 + round, &events), Duration::from_secs(30)).await.expect("warm-up");
    }
    let mut latencies = Vec::new();
    for round in 0..200 {
        // moto's FIFO send scans every message already on the queue, so an unconsumed control queue would make
        // each round slower than the last; the executor keeps it near empty in a real deployment.
        drain_queue(&config, &deployment.control_queue_url).await.expect("drain");
        let invocation = host.invoke(&batch(round, &events), Duration::from_secs(30)).await.expect("invoke");
        assert_eq!(invocation.response, json!({"batchItemFailures": []}));
        latencies.push(invocation.duration);
    }

    let pins = std::fs::read_to_string(tools::repo_root().join("tools/requirements.txt")).unwrap_or_default();
    let moto = pins.lines().find(|l| l.starts_with("moto")).unwrap_or("moto");
    println!("on-signal against the emulator ({moto}), binary {BINARY}");
    summary("cold start (spawn→/next)", cold);
    summary("batch of 10 records", latencies.clone());
    summary("per record (batch / 10)", latencies.iter().map(|d| *d / 10).collect());
    let size = std::fs::metadata(BINARY).map(|m| m.len()).unwrap_or_default();
    println!("binary size: {:.2} MiB ({size} bytes)", size as f64 / 1024.0 / 1024.0);
}
