//! `sdxl-worker serve` as processes against the emulator with the tiny model: no job lost or answered twice
//! through SIGKILL and SIGTERM, poison and invalid jobs, a spot notice from a local metadata endpoint,
//! heartbeats that keep a long job from being delivered twice, a duplicate delivery that cannot answer for the
//! run of another, images never overwritten by another job, and results kept when the reply queue is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use bytes::Bytes;
use gameforge_contract::{ErrorClass, GenerationJob, JobResult, JobState, JobStatus, Message, S3Uri, Tier};
use gameforge_jobs::{CancelOutcome, Client, ClientSettings, OWNER_ATTRIBUTE, Submitted};
use gameforge_localaws::{AwsError, Deployment, Emulator, LoopbackServer, RoleCredentials, Rule};
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::Value;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sdxl-a")
}

/// The tests time workers (a release within 2 s of a notice), and each runs several worker processes: on a
/// small CI machine they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Deliveries before SQS would move a job to the DLQ itself; clean hand-backs count too, so it is set above
/// the worker's own limit of two crashes.
const MAX_RECEIVES: u32 = 6;

/// The queues, bucket and job status store one test uses.
struct Setup {
    emulator: Emulator,
    /// The project's template deployed (prefix `w`): its job queue (with the visibility and receive limit the
    /// test sets as an operator would), dead-letter queue, status table and output bucket.
    deployment: Deployment,
    /// The game backend: a role with the template's GameBackendPolicy, enforced.
    client: Client,
    /// The worker task role's credentials, enforced on every worker process.
    worker_role: RoleCredentials,
    /// The account's own access, for what the test inspects.
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    bucket: String,
    jobs: String,
    dlq: String,
    replies: String,
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let attributes =
        sqs.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap();
    attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
}

async fn setup(visibility: u32) -> Setup {
    setup_with(visibility, &[]).await
}

/// [`setup`] with more of the template's parameters.
async fn setup_with(visibility: u32, parameters: &[(&str, &str)]) -> Setup {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let deployment = Deployment::deploy_with(&config, "w", &[], parameters).await.unwrap();
    let s3 = gameforge_jobs::clients::s3(&config);
    let (jobs, dlq) = (deployment.job_queue_url.clone(), deployment.job_dead_letter_url.clone());
    let dlq_arn = queue_arn(&sqs, &dlq).await;
    sqs.set_queue_attributes()
        .queue_url(&jobs)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility.to_string())
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}).to_string(),
        )
        .send()
        .await
        .unwrap();
    let replies = reply_queue(&sqs, "replies").await;
    let worker_role = emulator.assume_role(&deployment.role_name("worker-task"), "worker task").await.unwrap();
    let backend_policy = deployment.outputs["GameBackendPolicyArn"].clone();
    let backend = emulator.role_with_policies("game-backend", &[&backend_policy]).await.unwrap();
    let client = Client::new(
        &emulator.sdk_config_as(&backend, "us-east-1").await,
        &ClientSettings { job_queue_url: jobs.clone(), jobs_table: deployment.jobs_table.clone(), any_tier: None },
    );
    let bucket = deployment.output_bucket.clone();
    Setup { emulator, deployment, client, worker_role, sqs, s3, bucket, jobs, dlq, replies }
}

/// A reply queue of the test's deployment (prefix `w`).
async fn reply_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let created = sqs.create_queue().queue_name(name).tags("gameforge:reply-to", "w").send().await.unwrap();
    created.queue_url().unwrap().to_string()
}

impl Setup {
    fn output(&self) -> S3Uri {
        S3Uri::parse(&format!("s3://{}/out", self.bucket)).unwrap()
    }

    fn job(&self, id: &str, steps: u32, guidance: f64) -> GenerationJob {
        let mut job = GenerationJob::new(id, format!("a castle, number {id}"), "tiny", self.output());
        job.width = 64;
        job.height = 64;
        job.steps = steps;
        job.guidance = guidance;
        job.seed = Some(7);
        job.reply_to = Some(self.replies.clone());
        job
    }

    async fn send(&self, body: String) {
        self.sqs.send_message().queue_url(&self.jobs).message_body(body).send().await.unwrap();
    }

    /// Every result on the reply queue so far, consumed.
    async fn drain_results(&self, into: &mut Vec<JobResult>) {
        loop {
            let answer =
                self.sqs.receive_message().queue_url(&self.replies).max_number_of_messages(10).send().await.unwrap();
            if answer.messages().is_empty() {
                return;
            }
            for m in answer.messages() {
                into.push(JobResult::from_json(m.body().unwrap().as_bytes()).expect("results are valid JobResults"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.replies)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn depth(&self, queue: &str) -> (u64, u64) {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let get = |name: QueueAttributeName| attributes.attributes().unwrap()[&name].parse::<u64>().unwrap();
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    async fn images(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut pages = self.s3.list_objects_v2().bucket(&self.bucket).prefix("out/").into_paginator().send();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                keys.insert(o.key().unwrap().to_string());
            }
        }
        keys.into_iter().filter(|k| k.ends_with(".png")).collect()
    }

    /// A worker with its deployed defaults (the template's task environment sets none of these): 20 s long polls,
    /// the SDK's own timeouts and retries, the default stop timeout.
    fn worker_with_defaults(&self, name: &str) -> Worker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sdxl-worker"));
        command
            .args(["serve", "--model"])
            .arg(tiny())
            .args(["--model-id", "tiny", "--queue-url", &self.jobs, "--health-addr", "127.0.0.1:0", "--cpu"])
            .args(["--jobs-table", &self.deployment.jobs_table, "--imds", "off"])
            .envs(self.emulator.env_as(&self.worker_role))
            .env("RUST_LOG", "info");
        Worker::spawn(name, command)
    }

    fn worker(&self, name: &str, extra: &[&str]) -> Worker {
        self.worker_with_env(name, extra, self.emulator.env_as(&self.worker_role))
    }

    fn worker_with_env(&self, name: &str, extra: &[&str], env: Vec<(String, String)>) -> Worker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sdxl-worker"));
        command
            .args(["serve", "--model"])
            .arg(tiny())
            .args(["--model-id", "tiny", "--health-addr", "127.0.0.1:0", "--cpu"])
            .args(["--jobs-table", &self.deployment.jobs_table])
            .args(["--receive-wait-seconds", "1", "--stop-margin-seconds", "1"])
            .args(extra)
            .envs(env)
            .env("RUST_LOG", "info");
        if !extra.contains(&"--queue-url") {
            command.args(["--queue-url", &self.jobs]);
        }
        if !extra.contains(&"--imds") {
            command.args(["--imds", "off"]);
        }
        if !extra.contains(&"--stop-timeout-seconds") {
            command.args(["--stop-timeout-seconds", "20"]);
        }
        if !extra.contains(&"--visibility-seconds") {
            command.args(["--visibility-seconds", "6"]);
        }
        Worker::spawn(name, command)
    }
}

struct Worker {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Worker {
    fn spawn(name: &str, mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<(Instant, Value)>::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push((Instant::now(), value));
                }
            }
        });
        Worker { name: name.into(), child, lines }
    }

    /// Log lines with this message, with when they were seen.
    fn logged(&self, message: &str) -> Vec<(Instant, Value)> {
        self.lines.lock().unwrap().iter().filter(|(_, v)| v["message"] == message).cloned().collect()
    }

    async fn wait_for(&self, message: &str, timeout: Duration) -> (Instant, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.logged(message).into_iter().next() {
                return found;
            }
            assert!(Instant::now() < deadline, "{}: no {message:?} within {timeout:?}", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    async fn exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An IMDSv2 endpoint of a g5.xlarge spot instance in us-east-1a, with a spot notice once `noticed` is set: the
/// instance goes `lead` after each answer.
fn fake_imds(noticed: Arc<AtomicBool>, lead: chrono::Duration) -> LoopbackServer {
    LoopbackServer::start("fake-imds", move |request| {
        let noticed = Arc::clone(&noticed);
        async move {
            let path = request.uri().path().to_string();
            let respond = |status: StatusCode, body: String| {
                Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
            };
            if path == "/latest/api/token" {
                // As IMDS does: the token with its lifetime, which AWS's client needs to cache it.
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                    .body(Full::new(Bytes::from("token")))
                    .unwrap();
            }
            if request.headers().get("x-aws-ec2-metadata-token").is_none() {
                return respond(StatusCode::UNAUTHORIZED, String::new());
            }
            match path.as_str() {
                "/latest/meta-data/spot/instance-action" if noticed.load(Ordering::SeqCst) => {
                    let time = (chrono::Utc::now() + lead).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    respond(StatusCode::OK, format!(r#"{{"action": "terminate", "time": "{time}"}}"#))
                }
                "/latest/meta-data/placement/region" => respond(StatusCode::OK, "us-east-1".into()),
                "/latest/meta-data/placement/availability-zone" => respond(StatusCode::OK, "us-east-1a".into()),
                "/latest/meta-data/instance-type" => respond(StatusCode::OK, "g5.xlarge".into()),
                "/latest/meta-data/instance-id" => respond(StatusCode::OK, "i-0123456789abcdef0".into()),
                "/latest/meta-data/instance-life-cycle" => respond(StatusCode::OK, "spot".into()),
                _ => respond(StatusCode::NOT_FOUND, String::new()),
            }
        }
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_jobs_survive_a_sigkill_and_a_sigterm_with_one_result_each() {
    let _serial = SERIAL.lock().await;
    let setup = setup(6).await;
    // Every tenth job is slow enough to be caught mid-generation.
    let ids: Vec<String> = (0..200).map(|i| format!("job-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (steps, guidance) = if i % 10 == 0 { (40, 5.0) } else { (2, 1.0) };
        setup.send(setup.job(id, steps, guidance).to_json()).await;
    }
    let mut a = setup.worker("a", &[]);
    let mut b = setup.worker("b", &[]);
    let c = setup.worker("c", &[]);
    let slow = |w: &Worker| {
        w.logged("job started").into_iter().any(|(_, v)| {
            let id = v["job_id"].as_str().unwrap_or_default().to_string();
            ids.iter().position(|x| *x == id).is_some_and(|i| i % 10 == 0 && i > 0)
                && !w.logged("job finished").iter().any(|(_, f)| f["job_id"] == v["job_id"])
        })
    };
    let mut results = Vec::new();
    // A liveness bound, not a speed figure: 200 jobs through moto on two cores take about four minutes.
    let deadline = Instant::now() + Duration::from_secs(420);
    let (mut killed, mut terminated) = (false, false);
    while !(killed && terminated) {
        assert!(Instant::now() < deadline, "never caught a worker mid-job");
        if !killed && slow(&a) {
            a.signal("KILL");
            killed = true;
        }
        if !terminated && slow(&b) {
            b.signal("TERM");
            terminated = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = b.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "the SIGTERM'd worker exits cleanly: {status:?}");
    assert!(!a.exit(Duration::from_secs(5)).await.success());

    loop {
        setup.drain_results(&mut results).await;
        let distinct: BTreeSet<&str> = results.iter().map(|r| r.job_id.as_str()).collect();
        if distinct.len() == ids.len() {
            break;
        }
        if Instant::now() >= deadline {
            let mut missing = Vec::new();
            for id in ids.iter().filter(|id| !distinct.contains(id.as_str())) {
                missing.push((id.clone(), setup.client.status(id).await.unwrap().map(|r| r.state)));
            }
            panic!("{} of {} results; missing {missing:?}", distinct.len(), ids.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Anything late would be a second answer.
    tokio::time::sleep(Duration::from_secs(8)).await;
    setup.drain_results(&mut results).await;
    let mut per_job: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &results {
        *per_job.entry(r.job_id.as_str()).or_default() += 1;
        assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    }
    let twice: Vec<_> = per_job.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs answered more than once: {twice:?}");
    let images = setup.images().await;
    assert_eq!(images.len(), ids.len());
    for id in &ids {
        assert!(images.contains(&format!("out/{id}.png")));
    }
    assert_eq!(setup.depth(&setup.jobs).await, (0, 0), "nothing left on the queue or in flight");
    assert_eq!(setup.depth(&setup.dlq).await, (0, 0));
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_job_ends_in_the_dlq_with_a_failed_result_and_an_invalid_job_is_rejected_once() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    // A job that takes its worker down every time: two workers die on it (SIGKILL mid-generation).
    setup.send(setup.job("poison", 150, 5.0).to_json()).await;
    for name in ["victim-1", "victim-2"] {
        let mut victim = setup.worker(name, &[]);
        victim.wait_for("job started", Duration::from_secs(60)).await;
        victim.signal("KILL");
        victim.exit(Duration::from_secs(5)).await;
    }
    let mut invalid = serde_json::to_value(setup.job("invalid", 2, 1.0)).unwrap();
    invalid.as_object_mut().unwrap().remove("prompt");
    invalid["width"] = 65.into();
    setup.send(invalid.to_string()).await;
    setup.send("{not json".into()).await;

    let _worker = setup.worker("w", &[]);
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results.len() < 2 {
        assert!(Instant::now() < deadline, "results so far: {results:?}");
        setup.drain_results(&mut results).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let by_id: BTreeMap<&str, &JobResult> = results.iter().map(|r| (r.job_id.as_str(), r)).collect();
    let poison = by_id["poison"];
    assert_eq!(poison.status, JobStatus::Failed);
    assert_eq!(poison.error.as_ref().unwrap().class, ErrorClass::Poison);
    assert_eq!(poison.attempt, 3, "the third delivery is answered, not run");
    let rejected = by_id["invalid"];
    assert_eq!(rejected.status, JobStatus::Rejected);
    let message = &rejected.error.as_ref().unwrap().message;
    assert!(message.contains("prompt") && message.contains("width"), "{message}");

    // The poison job and the unanswerable message are in the DLQ with reasons; the invalid job is not.
    let mut dead = Vec::new();
    while Instant::now() < deadline && dead.len() < 2 {
        let got = setup
            .sqs
            .receive_message()
            .queue_url(&setup.dlq)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in got.messages() {
            let reason = m.message_attributes().unwrap()["error_reason"].string_value().unwrap().to_string();
            dead.push((m.body().unwrap().to_string(), reason));
        }
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .any(|(body, reason)| body.contains("\"poison\"") && reason.contains("ended 2 runs without an answer"))
    );
    assert!(dead.iter().any(|(body, reason)| body == "{not json" && reason.contains("no job id")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    setup.drain_results(&mut results).await;
    assert_eq!(results.len(), 2, "the invalid job is answered once, never retried");
    assert_eq!(setup.depth(&setup.jobs).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_runs_fail_on_aws_is_handed_back_and_not_taken_for_poison() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    // The first two runs cannot store their image (S3 answers 503 to every attempt the SDK makes): two runs that
    // end without an answer, as two crashes would, but their worker was alive and handed the job back.
    let attempts = Emulator::settings().max_attempts;
    let unavailable =
        setup.emulator.faults().add(Rule::for_service("s3").times(2 * attempts).fail(AwsError::service_unavailable()));
    setup.send(setup.job("flaky", 1, 1.0).to_json()).await;
    let _worker = setup.worker("w", &[]);
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while results.is_empty() {
        assert!(Instant::now() < deadline, "no result for the flaky job");
        setup.drain_results(&mut results).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(unavailable.hits(), 2 * attempts, "two runs failed on S3");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status, JobStatus::Succeeded, "not poison: {results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_event_cannot_be_published_is_retried_without_a_second_reply() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    // EventBridge refuses the final event on two deliveries (every attempt the SDK makes); the reply queue works.
    let attempts = Emulator::settings().max_attempts;
    let unavailable = setup.emulator.faults().add(
        Rule::for_service("events")
            .action("PutEvents")
            .body_contains("Generation Job Completed")
            .times(2 * attempts)
            .fail(AwsError::service_unavailable()),
    );
    setup.send(setup.job("eventful", 1, 1.0).to_json()).await;
    let _worker = setup.worker("w", &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    // Announced at last: the event went out and the message is gone.
    while unavailable.hits() < 2 * attempts || setup.depth(&setup.jobs).await != (0, 0) {
        assert!(Instant::now() < deadline, "the job was never announced ({} refusals)", unavailable.hits());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut results = Vec::new();
    setup.drain_results(&mut results).await;
    assert_eq!(results.len(), 1, "one reply, whatever the bus did: {results:?}");
    assert_eq!(results[0].status, JobStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_notice_releases_the_running_job_within_two_seconds() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    let noticed = Arc::new(AtomicBool::new(false));
    // The instance goes 5 s after the notice, inside the worker's 10 s margin, so the long job cannot fit
    // however fast this machine runs it (with EC2's 120 s it could: the test failed once the CPU kernels got
    // faster and the job fitted).
    let imds = fake_imds(Arc::clone(&noticed), chrono::Duration::seconds(5));
    let mut long = setup.job("long", 150, 5.0);
    long.width = 128;
    long.height = 128;
    setup.send(long.to_json()).await;
    setup.send(setup.job("short", 2, 1.0).to_json()).await;
    let endpoint = format!("http://{}", imds.addr());
    let mut worker =
        setup.worker("spot", &["--imds", &endpoint, "--imds-poll-ms", "200", "--stop-timeout-seconds", "120"]);
    let (_, started) = worker.wait_for("job started", Duration::from_secs(60)).await;
    // Let a few steps run so the worker knows its pace.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let notice = Instant::now();
    noticed.store(true, Ordering::SeqCst);
    let (released_at, _) =
        worker.wait_for("released: it would not finish before the instance goes", Duration::from_secs(10)).await;
    let took = released_at.duration_since(notice);
    assert!(took < Duration::from_secs(2), "released {took:?} after the notice");
    assert!(worker.exit(Duration::from_secs(10)).await.success());
    // The released job is on the queue again at once, for another worker.
    let got = setup
        .sqs
        .receive_message()
        .queue_url(&setup.jobs)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = got.messages().iter().map(|m| m.body().unwrap()).collect();
    assert!(bodies.iter().any(|b| b.contains(started["job_id"].as_str().unwrap())), "{bodies:?}");
    let mut results = Vec::new();
    setup.drain_results(&mut results).await;
    assert!(results.iter().all(|r| r.job_id != started["job_id"].as_str().unwrap()), "a released job has no result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_job_longer_than_the_visibility_timeout_from_a_second_delivery() {
    let _serial = SERIAL.lock().await;
    // A 2-second visibility timeout and a job of many seconds, with a second worker waiting for work.
    let setup = setup(2).await;
    // 128² (four times the pixels of the other jobs) so the job outlives two timeouts with room to spare on a
    // fast machine too: the guard below fails loudly rather than pass untested.
    let mut long = setup.job("long", 60, 5.0);
    (long.width, long.height) = (128, 128);
    setup.send(long.to_json()).await;
    let first = setup.worker("first", &["--visibility-seconds", "2"]);
    first.wait_for("job started", Duration::from_secs(60)).await;
    let second = setup.worker("second", &["--visibility-seconds", "2"]);
    let (_, finished) = first.wait_for("job finished", Duration::from_secs(120)).await;
    assert_eq!(finished["job_id"], "long");
    assert!(second.logged("job started").is_empty(), "the job was delivered twice");
    let mut results = Vec::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    setup.drain_results(&mut results).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].status, JobStatus::Succeeded);
    let generation = results[0].timings.generation_ms.unwrap();
    assert!(generation > 4000, "the job must outlive two visibility timeouts to test anything ({generation} ms)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_leaves_the_next_job_to_an_idle_one() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    // Four times the pixels and many steps: the job runs for many times the prefetch lead (3 s).
    let mut long = setup.job("long", 150, 5.0);
    (long.width, long.height) = (128, 128);
    setup.send(long.to_json()).await;
    let busy = setup.worker("busy", &[]);
    busy.wait_for("job started", Duration::from_secs(60)).await;
    setup.send(setup.job("next", 4, 5.0).to_json()).await;
    // A receive takes a message at once; after a few seconds it would long be gone had the busy worker fetched
    // it to wait behind the long job.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(busy.logged("job finished").is_empty(), "the long job must still be running to test anything");
    assert_eq!(setup.depth(&setup.jobs).await, (1, 1), "the busy worker fetched the next job behind its long one");
    let idle = setup.worker("idle", &[]);
    let (_, started) = idle.wait_for("job started", Duration::from_secs(60)).await;
    assert_eq!(started["job_id"], "next");
    let (_, finished) = busy.wait_for("job finished", Duration::from_secs(300)).await;
    assert_eq!(finished["job_id"], "long");
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while results.len() < 2 {
        assert!(Instant::now() < deadline, "{results:?}");
        setup.drain_results(&mut results).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(results.iter().all(|r| r.status == JobStatus::Succeeded), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_cancellation_and_metrics() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    let config = setup.emulator.sdk_config().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let seen = setup.sqs.create_queue().queue_name("events").send().await.unwrap().queue_url().unwrap().to_string();
    let seen_arn = queue_arn(&setup.sqs, &seen).await;
    events.put_rule().name("worker-events").event_pattern(r#"{"source": ["gameforge.worker"]}"#).send().await.unwrap();
    events
        .put_targets()
        .rule("worker-events")
        .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(seen_arn).build().unwrap())
        .send()
        .await
        .unwrap();
    setup.send(setup.job("quick", 20, 1.0).to_json()).await;
    // Submitted through the library: a caller cancels only its own jobs.
    setup.client.submit(&setup.job("cancel-me", 150, 5.0)).await.unwrap();
    let worker = setup.worker("w", &["--progress-every", "5"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if worker.logged("job started").iter().any(|(_, v)| v["job_id"] == "cancel-me") {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What `gameforge jobs cancel` does: the worker reads the request from the status store between steps.
    let answer = setup.client.cancel("cancel-me").await.unwrap();
    assert!(matches!(answer, CancelOutcome::Requested(_)), "{answer:?}");
    let mut results = Vec::new();
    while results.len() < 2 {
        assert!(Instant::now() < deadline, "{results:?}");
        setup.drain_results(&mut results).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cancelled = results.iter().find(|r| r.job_id == "cancel-me").unwrap();
    assert_eq!(cancelled.status, JobStatus::Failed);
    assert_eq!(cancelled.error.as_ref().unwrap().class, ErrorClass::Cancelled);
    assert!(setup.images().await.iter().all(|k| k != "out/cancel-me.png"), "a cancelled job stores no image");
    assert_eq!(setup.depth(&setup.jobs).await, (0, 0));

    // Events: progress every 5 steps of the quick job (5, 10, 15), one completed, one failed.
    let mut detail_types: Vec<(String, Value)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let got = setup
            .sqs
            .receive_message()
            .queue_url(&seen)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in got.messages() {
            let event: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            detail_types.push((event["detail-type"].as_str().unwrap().to_string(), event["detail"].clone()));
        }
        if detail_types.iter().filter(|(t, _)| t != "Generation Job Progress").count() >= 2 {
            break;
        }
    }
    let progress: Vec<u64> = detail_types
        .iter()
        .filter(|(t, d)| t == "Generation Job Progress" && d["job_id"] == "quick")
        .map(|(_, d)| d["step"].as_u64().unwrap())
        .collect();
    assert_eq!(progress, vec![5, 10, 15]);
    assert!(detail_types.iter().any(|(t, d)| t == "Generation Job Completed" && d["job_id"] == "quick"));
    assert!(detail_types.iter().any(|(t, d)| t == "Generation Job Failed" && d["job_id"] == "cancel-me"));

    // EMF metrics on stdout: queue wait, generation time, steps per second, results by status.
    let metrics: Vec<Value> =
        worker.lines.lock().unwrap().iter().map(|(_, v)| v.clone()).filter(|v| v.get("_aws").is_some()).collect();
    let succeeded = metrics.iter().find(|m| m.get("results_succeeded").is_some()).expect("a success record");
    for name in ["queue_wait", "generation_time", "steps_per_second"] {
        assert!(succeeded.get(name).is_some_and(Value::is_number), "{name} in {succeeded}");
    }
    assert!(metrics.iter().any(|m| m.get("results_failed").is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_round_trip_one_job_per_id_cancel_before_start_and_status_with_placement() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    let client = &setup.client;
    let mut job = setup.job("round-1", 40, 5.0);
    job.labels.insert("asset".into(), "castle-01".into());
    assert_eq!(client.submit(&job).await.unwrap(), Submitted::New);
    // The game backend retries after a timeout: the same id is the same job, nothing new is enqueued.
    let mut retried = job.clone();
    retried.submitted_at += chrono::Duration::seconds(2);
    assert!(matches!(client.submit(&retried).await.unwrap(), Submitted::Existing(_)));
    let never = setup.job("never-1", 20, 5.0);
    client.submit(&never).await.unwrap();
    assert!(matches!(client.cancel("never-1").await.unwrap(), CancelOutcome::Cancelled(_)));
    assert_eq!(setup.depth(&setup.jobs).await, (2, 0), "one message per job id");

    let imds = fake_imds(Arc::new(AtomicBool::new(false)), chrono::Duration::seconds(120));
    let endpoint = format!("http://{}", imds.addr());
    let worker = setup.worker("w", &["--imds", &endpoint, "--imds-poll-ms", "200"]);
    let mut seen = Vec::new();
    let result = client
        .wait("round-1", Duration::from_secs(120), |report| {
            seen.push((report.state, report.placement.clone(), report.progress));
        })
        .await
        .unwrap();
    assert_eq!(result.status, JobStatus::Succeeded, "{result:?}");
    assert_eq!(result.labels["asset"], "castle-01");
    let states: Vec<JobState> = seen.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(states.first(), Some(&JobState::Queued), "{states:?}");
    assert_eq!(states.last(), Some(&JobState::Succeeded), "{states:?}");
    let running: Vec<_> = seen.iter().filter(|(s, _, _)| *s == JobState::Running).collect();
    assert!(!running.is_empty(), "{states:?}");
    for (_, placement, _) in &running {
        let placement = placement.as_ref().expect("a running job says where");
        assert_eq!((placement.region.as_str(), placement.instance_id.as_str()), ("us-east-1", "i-0123456789abcdef0"));
    }
    assert!(running.iter().any(|(_, _, progress)| progress.is_some_and(|p| p.total == 40)), "{seen:?}");

    let dir = tempfile::tempdir().unwrap();
    let image = result.image.as_ref().unwrap();
    let path = client.download(image, dir.path()).await.unwrap();
    assert_eq!(path.file_name().unwrap(), "round-1.png");
    assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
    let url = client.image_url(image, Duration::from_secs(300)).await.unwrap();
    assert!(url.contains("round-1.png") && url.contains("X-Amz-Signature"), "{url}");

    // The cancelled job's message reaches the worker, which announces the cancellation and runs nothing.
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results.len() < 2 {
        assert!(Instant::now() < deadline, "{results:?}");
        setup.drain_results(&mut results).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    setup.drain_results(&mut results).await;
    assert_eq!(results.len(), 2, "one result per job: {results:?}");
    let cancelled = results.iter().find(|r| r.job_id == "never-1").unwrap();
    assert_eq!(cancelled.error.as_ref().unwrap().class, ErrorClass::Cancelled);
    assert!(worker.logged("job started").iter().all(|(_, v)| v["job_id"] != "never-1"), "a cancelled job never runs");
    assert!(setup.images().await.iter().all(|k| k != "out/never-1.png"));
    assert_eq!(setup.client.status("never-1").await.unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(setup.depth(&setup.jobs).await, (0, 0));
}

/// Every result on the reply queue until `count` have come (or the deadline passes, which fails the test).
async fn results(setup: &Setup, count: usize, within: Duration) -> Vec<JobResult> {
    let deadline = Instant::now() + within;
    let mut results = Vec::new();
    while results.len() < count {
        assert!(Instant::now() < deadline, "results so far: {results:?}");
        setup.drain_results(&mut results).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_past_its_deadline_does_not_change_the_outcome_of_the_run_in_progress() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    // 128²: the job must still be running when a second worker has started and judged the duplicate.
    let mut job = setup.job("held", 150, 5.0);
    (job.width, job.height) = (128, 128);
    setup.client.submit(&job).await.unwrap();
    let first = setup.worker("first", &[]);
    first.wait_for("job started", Duration::from_secs(60)).await;
    // A second message of the same job (what a retried plain send or a redrive makes), judged on arrival: its
    // deadline has passed. Only the request's fingerprint has to match the recorded job's, and it does. It goes
    // to a queue of its own, which only the second worker reads: the first would take it as its next message.
    let other_queue =
        setup.sqs.create_queue().queue_name("w2-jobs").send().await.unwrap().queue_url().unwrap().to_string();
    let mut late = job.clone();
    late.submitted_at -= chrono::Duration::hours(1);
    late.deadline = Some(chrono::Utc::now() - chrono::Duration::minutes(1));
    let owner = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(setup.client.owner().await.unwrap().as_str())
        .build()
        .unwrap();
    setup
        .sqs
        .send_message()
        .queue_url(&other_queue)
        .message_body(late.to_json())
        .message_attributes(OWNER_ATTRIBUTE, owner)
        .send()
        .await
        .unwrap();
    // The second queue is the test's device for a duplicate delivery, not a deployed queue: its worker acts with
    // the account's own key (the first, whose outcome is at stake, acts with the task role).
    let second = setup.worker_with_env("second", &["--queue-url", &other_queue], setup.emulator.env());
    second.wait_for("another delivery runs this job; its answer stands, not this one", Duration::from_secs(60)).await;
    assert!(first.logged("job finished").is_empty(), "the duplicate must meet the job running to test anything");
    // A liveness bound: 150 steps of the tiny model on two busy cores.
    let results = results(&setup, 1, Duration::from_secs(300)).await;
    assert_eq!(results[0].status, JobStatus::Succeeded, "{results:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut late_results = Vec::new();
    setup.drain_results(&mut late_results).await;
    assert!(late_results.is_empty(), "one answer only: {late_results:?}");
    assert_eq!(setup.client.status("held").await.unwrap().unwrap().state, JobState::Succeeded);
    assert!(second.logged("job started").is_empty());
    assert_eq!(setup.depth(&setup.jobs).await, (0, 0));
    assert_eq!(setup.depth(&other_queue).await, (0, 0), "the duplicate is gone");
    assert_eq!(setup.depth(&setup.dlq).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_never_overwritten_by_another_job_but_a_jobs_own_earlier_run_is_replaced() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    // An id reused after its record expired: the earlier job's image is still there.
    let earlier = b"the image of an earlier job".to_vec();
    setup
        .s3
        .put_object()
        .bucket(&setup.bucket)
        .key("out/reused.png")
        .body(earlier.clone().into())
        .send()
        .await
        .unwrap();
    setup.client.submit(&setup.job("reused", 2, 1.0)).await.unwrap();
    // A job whose first run stores its image and then cannot record its result (DynamoDB answers 503 to every
    // attempt): the run is handed back, and the next one replaces the image the first one stored.
    let attempts = Emulator::settings().max_attempts;
    let unrecorded = setup.emulator.faults().add(
        Rule::for_service("dynamodb")
            .action("UpdateItem")
            .body_contains("retried")
            .body_contains("result_json")
            .times(attempts)
            .fail(AwsError::service_unavailable()),
    );
    setup.client.submit(&setup.job("retried", 2, 1.0)).await.unwrap();
    let _worker = setup.worker("w", &[]);
    let results = results(&setup, 2, Duration::from_secs(90)).await;
    let by_id: BTreeMap<&str, &JobResult> = results.iter().map(|r| (r.job_id.as_str(), r)).collect();
    let reused = by_id["reused"];
    assert_eq!(reused.status, JobStatus::Failed);
    let error = reused.error.as_ref().unwrap();
    assert_eq!(error.class, ErrorClass::Storage);
    assert!(error.message.contains("never overwritten"), "{}", error.message);
    let kept = setup.s3.get_object().bucket(&setup.bucket).key("out/reused.png").send().await.unwrap();
    assert_eq!(kept.body.collect().await.unwrap().into_bytes().to_vec(), earlier);

    assert_eq!(unrecorded.hits(), attempts, "the first run stored its image and failed to record its result");
    assert_eq!(by_id["retried"].status, JobStatus::Succeeded, "{results:?}");
    let image = setup.s3.get_object().bucket(&setup.bucket).key("out/retried.png").send().await.unwrap();
    assert!(image.body.collect().await.unwrap().into_bytes().starts_with(b"\x89PNG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_reply_queue_is_gone_stays_recorded_unannounced_and_is_announced_once_it_is_back() {
    let _serial = SERIAL.lock().await;
    let setup = setup(30).await;
    let gone = reply_queue(&setup.sqs, "gone-replies").await;
    let mut job = setup.job("orphan", 2, 1.0);
    job.reply_to = Some(gone.clone());
    setup.client.submit(&job).await.unwrap();
    // The backend deletes its queue after submitting: the worker cannot deliver the result.
    setup.sqs.delete_queue().queue_url(&gone).send().await.unwrap();
    let worker = setup.worker("w", &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let dead = loop {
        assert!(Instant::now() < deadline, "the message never reached the dead-letter queue");
        let got = setup
            .sqs
            .receive_message()
            .queue_url(&setup.dlq)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(m) = got.messages().first() {
            break m.clone();
        }
    };
    let attributes = dead.message_attributes().unwrap();
    let reason = attributes["error_reason"].string_value().unwrap();
    assert!(reason.contains("gone-replies") && reason.contains("refuses"), "{reason}");
    let report = setup.client.status("orphan").await.unwrap().unwrap();
    assert_eq!(report.state, JobState::Succeeded, "the result is recorded all the same");

    // The queue comes back and the message is moved back from the dead-letter queue (with its attributes): the
    // stored result, never announced, is announced now, and the job does not run again.
    let back = reply_queue(&setup.sqs, "gone-replies").await;
    assert_eq!(back, gone);
    setup
        .sqs
        .send_message()
        .queue_url(&setup.jobs)
        .message_body(dead.body().unwrap())
        .set_message_attributes(Some(
            [(OWNER_ATTRIBUTE.to_string(), attributes[OWNER_ATTRIBUTE].clone())].into_iter().collect(),
        ))
        .send()
        .await
        .unwrap();
    let announced = loop {
        assert!(Instant::now() < deadline, "the stored result was never announced");
        let got = setup.sqs.receive_message().queue_url(&back).wait_time_seconds(1).send().await.unwrap();
        if let Some(m) = got.messages().first() {
            break JobResult::from_json(m.body().unwrap().as_bytes()).unwrap();
        }
    };
    assert_eq!(announced.status, JobStatus::Succeeded);
    assert_eq!(Some(announced), report.result);
    assert_eq!(worker.logged("job started").len(), 1, "answered once, run once");
    // AWS refuses a send to a queue that is not there as it refuses any send the role may not make: a queue that
    // does not exist carries no reply-to tag. That refusal is what the worker met, and all it met.
    let denials = setup.emulator.iam().take_denials();
    assert!(!denials.is_empty());
    assert!(
        denials.iter().all(|d| d.call == "sqs:SendMessage" && d.resource.ends_with(":gone-replies")),
        "{denials:#?}"
    );
}

/// With its deployed defaults a worker long-polls for 20 s. An SDK attempt that gave up before the poll did would
/// abandon it while SQS can still hand it a job, which then stays hidden for the visibility timeout (60 s here)
/// with its receive count raised. Jobs arriving at different points of idle polls are each taken at once, on their
/// first delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_its_deployed_defaults_takes_each_job_at_once_after_idle_long_polls() {
    let _serial = SERIAL.lock().await;
    let setup = setup(60).await;
    let worker = setup.worker_with_defaults("defaults");
    worker.wait_for("ready", Duration::from_secs(60)).await;
    for (i, idle) in [12u64, 15, 11].into_iter().enumerate() {
        // Idle past the SDK's 10 s default attempt timeout, into the poll.
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let id = format!("idle-{i}");
        let mut job = setup.job(&id, 1, 1.0);
        job.reply_to = Some(setup.replies.clone());
        let submitted = Instant::now();
        setup.client.submit(&job).await.unwrap();
        let done = results(&setup, 1, Duration::from_secs(75)).await;
        assert_eq!(done[0].job_id, id);
        assert_eq!(done[0].status, JobStatus::Succeeded, "{done:?}");
        let took = submitted.elapsed();
        assert!(took < Duration::from_secs(40), "{id} waited {took:?}: its first delivery went to an abandoned poll");
    }
    assert_eq!(setup.depth(&setup.dlq).await, (0, 0));
}

/// The fleet file's CPU tier as a CPU worker is given it; the tiny model's jobs fit its budget, and its pace is so
/// slow that no deadline a test sets can be met: a job that has one is handed to the GPUs.
const CPU_TIER: &str = r#"{"ecs_service": "w-sdxl-cpu-worker", "vcpus": 16, "memory_gib": 64, "price_per_hour": 0.91,
  "pace": {"step_seconds_per_megapixel": 100000.0, "decode_seconds_per_megapixel": 22.0, "job_seconds": 2.0},
  "budget": {"max_megapixel_evaluations": 2.2, "max_megapixels": 0.27},
  "enter": {"oldest_job_waited": "10m", "leave_after": "5m"}, "max_workers": 4, "target_backlog_per_worker": 8}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_worker_serves_only_the_any_tier_queue_and_a_gpu_worker_serves_both() {
    let _serial = SERIAL.lock().await;
    // Deployed with the tier, so that the CPU worker runs as the CPU worker's own role.
    let setup = setup_with(60, &[("CpuTier", CPU_TIER)]).await;
    let cpu_role = setup.emulator.assume_role(&setup.deployment.role_name("cpu-worker-task"), "cpu worker").await;
    let any_tier = setup.deployment.any_tier_queue_url.clone();
    let send_to = |queue: &str, id: &str, deadline: Option<Duration>| {
        let mut job = setup.job(id, 1, 1.0);
        job.deadline = deadline.map(|d| job.submitted_at + chrono::Duration::from_std(d).unwrap());
        setup.sqs.send_message().queue_url(queue).message_body(job.to_json()).send()
    };
    send_to(&setup.jobs, "gpu-1", None).await.unwrap();
    send_to(&any_tier, "any-1", None).await.unwrap();
    send_to(&any_tier, "any-late", Some(Duration::from_secs(300))).await.unwrap();
    send_to(&any_tier, "any-2", None).await.unwrap();

    let cpu_args = ["--any-tier-queue-url", &any_tier, "--cpu-tier", CPU_TIER];
    let cpu = setup.worker_with_env("cpu", &cpu_args, setup.emulator.env_as(&cpu_role.unwrap()));
    let served = results(&setup, 2, Duration::from_secs(90)).await;
    let mut ids: Vec<&str> = served.iter().map(|r| r.job_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["any-1", "any-2"]);
    assert!(served.iter().all(|r| r.status == JobStatus::Succeeded && r.tier == Some(Tier::Cpu)), "{served:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        setup.depth(&setup.jobs).await,
        (2, 0),
        "the GPU-only job is never a CPU worker's, and the one it cannot finish in time was handed on"
    );
    assert_eq!(setup.depth(&any_tier).await, (0, 0));
    assert!(cpu.logged("job started").iter().all(|(_, v)| v["job_id"] != "gpu-1" && v["job_id"] != "any-late"));
    // Stopped as ECS stops a task: a receive still in flight hands back what it brings.
    let mut cpu = cpu;
    cpu.signal("TERM");
    assert!(cpu.exit(Duration::from_secs(30)).await.success());

    send_to(&any_tier, "any-3", None).await.unwrap();
    let gpu = setup.worker("gpu", &["--any-tier-queue-url", &any_tier]);
    let served = results(&setup, 3, Duration::from_secs(90)).await;
    let mut ids: Vec<&str> = served.iter().map(|r| r.job_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["any-3", "any-late", "gpu-1"]);
    assert!(served.iter().all(|r| r.status == JobStatus::Succeeded && r.tier == Some(Tier::Gpu)), "{served:?}");
    drop(gpu);
    for queue in [&setup.jobs, &any_tier, &setup.dlq] {
        assert_eq!(setup.depth(queue).await, (0, 0), "{queue}");
    }
}
