//! The worker's own overhead around each job, against the emulator: receive → model start, and model done →
//! result sent (image stored, result recorded in the status store and sent to the reply queue and the event bus). One `sdxl-worker serve`
//! process, the tiny model, one-step jobs so the model itself takes almost nothing.
//!
//! `cargo bench -p sdxl-worker --bench queue_overhead -- [--jobs N]`

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gameforge_contract::{GenerationJob, Message, S3Uri};
use gameforge_localaws::{Deployment, Emulator};
use serde_json::Value;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip_while(|a| a != "--jobs");
    let jobs: usize = args.nth(1).and_then(|n| n.parse().ok()).unwrap_or(200);
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let deployment = Deployment::deploy(&config, "bench").await.unwrap();
    let s3 = gameforge_jobs::clients::s3(&config);
    s3.create_bucket().bucket("images").send().await.unwrap();
    let queue = sqs.create_queue().queue_name("jobs").send().await.unwrap().queue_url().unwrap().to_string();
    let replies = sqs.create_queue().queue_name("replies").send().await.unwrap().queue_url().unwrap().to_string();
    for i in 0..jobs {
        let mut job =
            GenerationJob::new(format!("job-{i}"), "a castle", "tiny", S3Uri::parse("s3://images/out").unwrap());
        (job.width, job.height, job.steps, job.guidance) = (64, 64, 1, 1.0);
        job.reply_to = Some(replies.clone());
        sqs.send_message().queue_url(&queue).message_body(job.to_json()).send().await.unwrap();
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sdxl-a");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sdxl-worker"))
        .args(["serve", "--model"])
        .arg(&model)
        .args(["--model-id", "tiny", "--queue-url", &queue, "--health-addr", "127.0.0.1:0", "--imds", "off", "--cpu"])
        .args(["--receive-wait-seconds", "1", "--jobs-table", &deployment.jobs_table])
        .envs(emulator.env())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (mut to_start, mut picked, mut to_result) = (Vec::new(), Vec::new(), Vec::new());
    let mut first = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        match v["message"].as_str() {
            Some("job started") => {
                first.get_or_insert_with(Instant::now);
                to_start.push(v["receive_to_start_ms"].as_f64().unwrap());
                picked.push(v["pick_to_start_ms"].as_f64().unwrap());
            }
            Some("job finished") => {
                to_result.push(v["done_to_result_ms"].as_f64().unwrap());
                if to_result.len() == jobs {
                    break;
                }
            }
            _ => {}
        }
    }
    let elapsed = first.map(|f| f.elapsed()).unwrap_or(Duration::ZERO);
    let _ = child.kill();
    let _ = child.wait();
    to_start.sort_by(f64::total_cmp);
    picked.sort_by(f64::total_cmp);
    to_result.sort_by(f64::total_cmp);
    println!(
        "jobs                      {jobs} (tiny model, 64x64, 1 step, no guidance), one worker, debug={}",
        cfg!(debug_assertions)
    );
    println!(
        "receive -> model start    p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        percentile(&to_start, 0.5),
        percentile(&to_start, 0.95),
        to_start.last().unwrap()
    );
    println!(
        "free model -> model start p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms (a prefetched job: judge, claim in the status store, hand-off)",
        percentile(&picked, 0.5),
        percentile(&picked, 0.95),
        picked.last().unwrap()
    );
    println!(
        "model done -> result sent p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        percentile(&to_result, 0.5),
        percentile(&to_result, 0.95),
        to_result.last().unwrap()
    );
    println!("throughput                {:.1} jobs/s", jobs as f64 / elapsed.as_secs_f64().max(1e-9));
}
