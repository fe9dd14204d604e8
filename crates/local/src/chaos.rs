//! The reliability run: many jobs through the whole local system while faults are thrown at it — workers
//! killed at random (SIGKILL, mid-job or idle), bursts of throttling and 5xx answers on every AWS service the
//! system uses, EventBridge events delivered twice, malformed events and malformed jobs. It reports jobs lost,
//! results that disagree, crashes, and how long the system took to recover from each fault.
//!
//! With an outage length, the run instead takes AWS away for that long on each service in turn and then on all
//! at once, while jobs keep arriving at a steady rate: nothing may be lost, answered twice differently, or
//! dead-lettered while valid, and the report says how long service took to come back after each outage.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use gameforge_contract::{GenerationJob, JobResult, JobState, Message, S3Uri};
use gameforge_localaws::{AwsError, Rule, RuleHandle, tools};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::story::{MODEL_ID, system_options};
use crate::system::{Options, PREFIX, System};
use crate::timeline::Timeline;

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub jobs: u32,
    pub seed: u64,
    /// Mean seconds between worker kills, between AWS fault bursts, and between bad events.
    pub kill_every: f64,
    pub burst_every: f64,
    pub event_every: f64,
    pub out: PathBuf,
    /// Gives up when the jobs are not all final within this long.
    pub timeout: Duration,
    /// Outage mode: each service unavailable for this long in turn, then all at once (no kills, no bursts).
    pub outage: Option<Duration>,
    /// The stacks' `CpuTier` parameter, if any ([`crate::system::Options::cpu_tier`]).
    pub cpu_tier: Option<String>,
}

/// The outages of outage mode, in order: each service alone, then every one at once.
fn outage_plan() -> Vec<Vec<&'static str>> {
    let mut plan: Vec<Vec<&'static str>> = SERVICES.iter().map(|s| vec![*s]).collect();
    plan.push(SERVICES.to_vec());
    plan
}

/// Time between outages, for the system to catch up.
const BETWEEN_OUTAGES: Duration = Duration::from_secs(60);

/// How long outage mode plays its outages, first to last.
fn outage_schedule_length(outage: Duration) -> Duration {
    (outage + BETWEEN_OUTAGES) * outage_plan().len() as u32
}

/// No reply for this long, with jobs still waiting, ends the run as stalled.
const STALL: Duration = Duration::from_secs(240);

/// The longest a job message stays hidden after the faults stop: a worker's longest hand-back (2 minutes,
/// after a failed dead-letter send) plus the lease of a run a killed worker left, with a margin. Until then a
/// malformed job may still be on its way to the dead-letter queue.
const LONGEST_HIDDEN: Duration = Duration::from_secs(120 + 60 + 30);

/// Every service the system calls, by its signing name.
const SERVICES: &[&str] = &["sqs", "dynamodb", "s3", "events", "ec2", "ecs"];

/// One fault thrown and what it took to get over it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub at_s: f64,
    pub kind: String,
    pub detail: String,
    /// Seconds from the fault to the system being whole again (see [`Report`] for what that means per kind);
    /// `None` where nothing depended on it.
    pub recovered_after_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub jobs: u32,
    pub seed: u64,
    pub duration_s: f64,
    pub succeeded: u32,
    /// Jobs without a final answer, or answered `succeeded` without their image in S3, at the end, each as
    /// `id: why`.
    pub lost: Vec<String>,
    /// Jobs answered `failed` because their worker died under them twice (the poison rule), not lost: the
    /// backend got a failed result.
    pub failed_as_poison: Vec<String>,
    /// Jobs whose result messages disagree with each other or with the status store.
    pub conflicting_results: Vec<String>,
    /// Jobs final in the status store whose result never reached the reply queue.
    pub unannounced: Vec<String>,
    /// Result messages delivered more than once for a job, all identical (at-least-once announcing).
    pub repeated_announcements: u32,
    pub worker_kills: u32,
    /// Worker exits nobody caused by signal: panics and signals (crashes), and exits with an error the worker
    /// reported (a start that failed under injected AWS errors; ECS starts it again).
    pub worker_crashes: u32,
    pub worker_error_exits: u32,
    pub function_crashes: u32,
    /// Calls of the deployed principals that IAM would have denied.
    pub iam_denials: Vec<String>,
    pub aws_faults_injected: u32,
    pub duplicate_events_sent: u32,
    pub duplicate_events_suppressed: u32,
    pub malformed_events_sent: u32,
    pub malformed_events_dead_lettered: u32,
    pub malformed_jobs_sent: u32,
    pub malformed_jobs_dead_lettered: u32,
    /// Valid jobs and events found on the dead-letter queues at the end: work lost to a failure that was not
    /// theirs.
    pub valid_jobs_dead_lettered: u32,
    pub valid_signals_dead_lettered: u32,
    pub faults: Vec<Fault>,
}

/// A burst of AWS errors: when it started, what it was, its rule, its size, and the hits seen with when the
/// last one was seen to go out.
type Burst = (f64, String, RuleHandle, u32, (u32, f64));

/// Results as the game backend receives them on its reply queue.
#[derive(Debug, Default)]
struct Replies {
    /// Each distinct result message per job (a message SQS delivers again is not a second announcement).
    by_job: HashMap<String, Vec<(JobResult, f64)>>,
    seen: std::collections::HashSet<String>,
}

fn chaos_job(system: &System, id: &str, reply_to: &str) -> anyhow::Result<GenerationJob> {
    let output = S3Uri::parse(&format!("s3://{}/chaos/", system.deployment.output_bucket))?;
    let mut job = GenerationJob::new(id, format!("a game item icon, variant {id}"), MODEL_ID, output);
    job.width = 64;
    job.height = 64;
    job.steps = 2;
    job.guidance = 1.0;
    job.seed = Some(11);
    job.reply_to = Some(reply_to.to_owned());
    Ok(job)
}

/// An exponential wait with the given mean, so faults arrive as a Poisson process.
fn next_gap(rng: &mut StdRng, mean: f64) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    Duration::from_secs_f64((-u.ln() * mean).clamp(0.2, mean * 4.0))
}

pub async fn run(options: &ChaosOptions) -> anyhow::Result<Report> {
    let timeline = Timeline::quiet();
    let system_options = Options { cpu_tier: options.cpu_tier.clone(), ..system_options() };
    let system = System::start(&system_options, timeline.clone()).await?;
    let outcome = play(&system, options).await;
    let lines = timeline.lines();
    system.shutdown().await;
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    std::fs::write(options.out.join("timeline.txt"), lines.join("\n") + "\n")?;
    let report = outcome?;
    std::fs::write(options.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

async fn play(system: &System, options: &ChaosOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let at = move || started.elapsed().as_secs_f64();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let sqs = aws_sdk_sqs::Client::new(&system.config);
    // Tagged as a reply queue of the deployment: the only queues a job may name and the workers may send to.
    let reply_queue = sqs
        .create_queue()
        .queue_name("chaos-replies")
        .tags(gameforge_jobs::reply_to::REPLY_TO_TAG, PREFIX)
        .send()
        .await?
        .queue_url
        .context("reply queue")?;

    // The game backend reads its replies as they come.
    let replies = Arc::new(Mutex::new(Replies::default()));
    let backend_sqs = aws_sdk_sqs::Client::new(&system.backend);
    let collector = tokio::spawn(collect(backend_sqs, reply_queue.clone(), Arc::clone(&replies), started));

    // Submission, retried the way a backend does (a submission is idempotent by job id).
    let ids: Vec<String> = (0..options.jobs).map(|i| format!("chaos-{i:04}")).collect();
    // In outage mode the jobs arrive at a steady rate over the whole plan, so that every outage meets work, and
    // a submission is retried for as long as the run lasts (the backend keeps its job until AWS takes it).
    let pace = options.outage.map(|length| outage_schedule_length(length) / options.jobs.max(1));
    let give_up_after = if options.outage.is_some() { u32::MAX } else { 20 };
    let submitter = {
        let client = system.client.clone();
        let jobs: Vec<GenerationJob> =
            ids.iter().map(|id| chaos_job(system, id, &reply_queue)).collect::<anyhow::Result<_>>()?;
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (index, job) in jobs.into_iter().enumerate() {
                // On a schedule, not a gap after each: a submission held up by an outage does not push the rest
                // past the outages they were meant to meet.
                if let Some(pace) = pace {
                    tokio::time::sleep_until(start + pace * index as u32).await;
                }
                let mut attempt = 0u32;
                while let Err(error) = client.submit(&job).await {
                    attempt += 1;
                    if attempt > give_up_after {
                        return Err(anyhow::anyhow!("{} not submitted: {error}", job.job_id));
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
                }
            }
            Ok(())
        })
    };
    // Outage mode: `(start, services, rule handles, end)` of each outage played so far, and what is left to play.
    let mut outages: Vec<(f64, String, Vec<RuleHandle>, f64)> = Vec::new();
    let mut plan = outage_plan().into_iter();
    let mut next_outage = Instant::now() + BETWEEN_OUTAGES / 2;

    let mut faults: Vec<Fault> = Vec::new();
    let mut kills: Vec<(f64, String, Option<String>)> = Vec::new();
    let mut bursts: Vec<Burst> = Vec::new();
    let mut report = Report {
        jobs: options.jobs,
        seed: options.seed,
        duration_s: 0.0,
        succeeded: 0,
        lost: Vec::new(),
        failed_as_poison: Vec::new(),
        unannounced: Vec::new(),
        conflicting_results: Vec::new(),
        repeated_announcements: 0,
        worker_kills: 0,
        worker_crashes: 0,
        worker_error_exits: 0,
        function_crashes: 0,
        iam_denials: Vec::new(),
        aws_faults_injected: 0,
        duplicate_events_sent: 0,
        duplicate_events_suppressed: 0,
        malformed_events_sent: 0,
        malformed_events_dead_lettered: 0,
        malformed_jobs_sent: 0,
        malformed_jobs_dead_lettered: 0,
        valid_jobs_dead_lettered: 0,
        valid_signals_dead_lettered: 0,
        faults: Vec::new(),
    };
    let samples = duplicate_candidates()?;
    let now = Instant::now();
    // The first kill comes as soon as a worker is mid-job, so that even a short run loses a worker under a job;
    // the others at random.
    let (mut next_kill, mut next_burst, mut next_event) =
        (now, now + next_gap(&mut rng, options.burst_every), now + next_gap(&mut rng, options.event_every));
    if options.outage.is_some() {
        // Outages alone: no kills and no bursts to blur what each outage did.
        (next_kill, next_burst) = (now + options.timeout * 2, now + options.timeout * 2);
    }
    let deadline = now + options.timeout;
    let mut submitted = false;
    // A job can end without a reply reaching the backend; the run then ends once the job queue has been empty
    // and no reply has come for a while, and the checks below name such jobs.
    let (mut last_done, mut quiet_since) = (0, Instant::now());
    let mut flushed = Instant::now();
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The timeline so far, for watching a long run.
        if flushed.elapsed() > Duration::from_secs(30) {
            flushed = Instant::now();
            let _ = std::fs::write(options.out.join("timeline.txt"), system.timeline.lines().join("\n") + "\n");
        }
        let done = replies.lock().unwrap_or_else(|p| p.into_inner()).by_job.len();
        if submitter.is_finished() && !submitted {
            submitted = true;
        }
        if submitted && done >= ids.len() {
            break;
        }
        if done != last_done {
            (last_done, quiet_since) = (done, Instant::now());
        } else if submitted
            && quiet_since.elapsed() > Duration::from_secs(45)
            && gameforge_localaws::queue_depth(&system.config, &system.deployment.job_queue_url).await.unwrap_or(1) == 0
        {
            break;
        } else if submitted && quiet_since.elapsed() > STALL {
            // Nothing has completed for minutes with jobs still waiting: the system is stuck, and the checks below
            // say on what.
            break;
        }
        for (_, _, handle, _, last) in bursts.iter_mut() {
            let hits = handle.hits();
            if hits != last.0 {
                *last = (hits, at());
            }
        }
        if Instant::now() > deadline {
            break;
        }
        if let Some(length) = options.outage
            && Instant::now() >= next_outage
            && let Some(services) = plan.next()
        {
            let t = at();
            let handles = services
                .iter()
                .map(|service| {
                    system
                        .emulator
                        .faults()
                        .add(Rule::for_service(service).during(length).fail(AwsError::service_unavailable()))
                })
                .collect();
            let what = format!("{} s of 503 ServiceUnavailable on {}", length.as_secs(), services.join(", "));
            system.timeline.line("chaos", format!("outage: {what}"));
            outages.push((t, what, handles, t + length.as_secs_f64()));
            next_outage = Instant::now() + length + BETWEEN_OUTAGES;
        }
        if Instant::now() >= next_kill {
            let first = report.worker_kills == 0;
            next_kill = Instant::now();
            let running = system.hosts.running().await;
            if !running.is_empty() {
                let (instance, _) = running[rng.random_range(0..running.len())].clone();
                let job = running_job(system, &instance).await;
                if (!first || job.is_some()) && system.hosts.kill_worker(&instance).await {
                    report.worker_kills += 1;
                    kills.push((at(), instance, job));
                    next_kill = Instant::now() + next_gap(&mut rng, options.kill_every);
                }
            }
        }
        if Instant::now() >= next_burst {
            next_burst = Instant::now() + next_gap(&mut rng, options.burst_every);
            let service = SERVICES[rng.random_range(0..SERVICES.len())];
            let n = rng.random_range(3..=12);
            let (error, name) = match rng.random_range(0..3) {
                0 => (AwsError::throttling(service), "throttling"),
                1 => (AwsError::internal_error(), "500 InternalError"),
                _ => (AwsError::service_unavailable(), "503 ServiceUnavailable"),
            };
            let handle = system.emulator.faults().add(Rule::for_service(service).times(n).fail(error));
            let t = at();
            bursts.push((t, format!("{n} × {name} on {service}"), handle, n, (0, t)));
        }
        if Instant::now() >= next_event {
            next_event = Instant::now() + next_gap(&mut rng, options.event_every);
            match rng.random_range(0..4) {
                0 => {
                    let body = MALFORMED_EVENTS[rng.random_range(0..MALFORMED_EVENTS.len())];
                    if sqs
                        .send_message()
                        .queue_url(&system.deployment.signals_queue_url)
                        .message_body(body)
                        .send()
                        .await
                        .is_ok()
                    {
                        report.malformed_events_sent += 1;
                        faults.push(Fault {
                            at_s: at(),
                            kind: "malformed event".into(),
                            detail: body.chars().take(40).collect(),
                            recovered_after_s: None,
                        });
                    }
                }
                1 => {
                    let body = MALFORMED_JOBS[rng.random_range(0..MALFORMED_JOBS.len())];
                    if sqs
                        .send_message()
                        .queue_url(&system.deployment.job_queue_url)
                        .message_body(body)
                        .send()
                        .await
                        .is_ok()
                    {
                        report.malformed_jobs_sent += 1;
                        faults.push(Fault {
                            at_s: at(),
                            kind: "malformed job".into(),
                            detail: body.chars().take(40).collect(),
                            recovered_after_s: None,
                        });
                    }
                }
                _ => {
                    // EventBridge delivers at least once: the same event (same id) twice, a moment apart.
                    let (name, body) = &samples[rng.random_range(0..samples.len())];
                    let fresh =
                        body.replace("\"id\": \"", &format!("\"id\": \"chaos-{}-", report.duplicate_events_sent));
                    let mut sent = 0;
                    for _ in 0..2 {
                        if sqs
                            .send_message()
                            .queue_url(&system.deployment.signals_queue_url)
                            .message_body(&fresh)
                            .send()
                            .await
                            .is_ok()
                        {
                            sent += 1;
                        }
                    }
                    if sent == 2 {
                        report.duplicate_events_sent += 1;
                        faults.push(Fault {
                            at_s: at(),
                            kind: "duplicated event".into(),
                            detail: name.clone(),
                            recovered_after_s: None,
                        });
                    }
                }
            }
        }
    }
    // Faults stop, bursts with answers left included: whatever is left must still finish, and the checks below
    // must not be answered by a fault.
    for (_, _, handle, _, _) in &bursts {
        handle.end();
    }
    for handle in outages.iter().flat_map(|(_, _, handles, _)| handles) {
        handle.end();
    }
    let all_done = async {
        loop {
            let done = replies.lock().unwrap_or_else(|p| p.into_inner()).by_job.len();
            if done >= ids.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), all_done).await;
    submitter.await.context("the submitter")??;
    // Let the signal path settle and the job queue empty, so that every bad input has been dealt with (a
    // malformed job a killed worker held comes back after its visibility timeout).
    let _ = system.wait_signals_settled(Duration::from_secs(60)).await;
    let queue_empty = async {
        while gameforge_localaws::queue_depth(&system.config, &system.deployment.job_queue_url).await.unwrap_or(1) > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let _ = tokio::time::timeout(LONGEST_HIDDEN, queue_empty).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    collector.abort();
    report.duration_s = at();

    let replies = std::mem::take(&mut *replies.lock().unwrap_or_else(|p| p.into_inner()));
    let completed_at = |job: &str| replies.by_job.get(job).and_then(|r| r.first()).map(|(_, t)| *t);
    // The first job completion after a fault's last faulty answer: the system is serving again.
    let completions: Vec<f64> = {
        let mut all: Vec<f64> = replies.by_job.values().filter_map(|r| r.first().map(|(_, t)| *t)).collect();
        all.sort_by(f64::total_cmp);
        all
    };
    let next_completion = |after: f64| completions.iter().copied().find(|t| *t >= after);
    for (t, instance, job) in &kills {
        let recovered = match job {
            Some(job) => completed_at(job).map(|done| done - t),
            None => next_completion(*t).map(|done| done - t),
        };
        faults.push(Fault {
            at_s: *t,
            kind: "worker killed".into(),
            detail: format!(
                "{instance}{}",
                job.as_ref().map(|j| format!(" running {j}")).unwrap_or_else(|| " (idle)".into())
            ),
            recovered_after_s: recovered,
        });
    }
    for (t, what, handle, n, (_, last_hit)) in &bursts {
        let hits = handle.hits();
        report.aws_faults_injected += hits;
        faults.push(Fault {
            at_s: *t,
            kind: "aws fault burst".into(),
            detail: format!("{what} ({hits}/{n} answered)"),
            // Serving again: the first job completed after the burst's last faulty answer.
            recovered_after_s: (hits > 0).then(|| next_completion(*last_hit).map(|done| done - t)).flatten(),
        });
    }
    for (t, what, handles, end) in &outages {
        let hits: u32 = handles.iter().map(RuleHandle::hits).sum();
        report.aws_faults_injected += hits;
        faults.push(Fault {
            at_s: *t,
            kind: "aws outage".into(),
            detail: format!("{what} ({hits} calls refused)"),
            // Serving again: the first job completed after the outage ended.
            recovered_after_s: next_completion(*end).map(|done| done - end),
        });
    }
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    report.faults = faults;

    // What the backend got, checked against the status store and S3.
    let s3 = gameforge_jobs::clients::s3(&system.config);
    for id in &ids {
        let status = system.client.status(id).await.with_context(|| format!("status of {id}"))?;
        let stored = status.as_ref().and_then(|s| s.result.clone());
        let received = replies.by_job.get(id).map(Vec::as_slice).unwrap_or_default();
        let image = match stored.as_ref().and_then(|r| r.image.clone()) {
            Some(image) => s3
                .head_object()
                .bucket(image.bucket())
                .key(image.prefix())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("image {image} unreadable: {}", gameforge_aws::sdk_error::describe(&e))),
            None => Err("no image in the stored result".to_owned()),
        };
        match (status.as_ref().map(|s| s.state), image) {
            (Some(JobState::Succeeded), Ok(())) => report.succeeded += 1,
            (Some(JobState::Failed), _) if !received.is_empty() => report.failed_as_poison.push(id.clone()),
            (None, _) => report.lost.push(format!("{id}: no record in the status store")),
            (Some(JobState::Succeeded), Err(why)) => report.lost.push(format!("{id}: succeeded but {why}")),
            (Some(state), _) => {
                report.lost.push(format!("{id}: {state:?} in the store with {} replies received", received.len()))
            }
        }
        if received.is_empty() && status.as_ref().is_some_and(|s| s.state.is_final()) {
            report.unannounced.push(id.clone());
        }
        if received.len() > 1 {
            report.repeated_announcements += (received.len() - 1) as u32;
        }
        if received.iter().any(|(r, _)| Some(r) != stored.as_ref()) {
            report.conflicting_results.push(id.clone());
        }
    }
    let stats = system.hosts.stats();
    report.worker_crashes = stats.panicked;
    report.worker_error_exits = stats.exited_with_error;
    report.function_crashes = system.function_exits();
    report.iam_denials = system.take_iam_denials();
    let logs = system.on_signal_logs();
    report.duplicate_events_suppressed =
        logs.iter().filter(|l| l.contains("\"duplicate event, already processed\"")).count() as u32;
    // What the dead-letter queues hold, told apart: malformed input belongs there, valid work does not.
    for message in gameforge_localaws::drain_queue(&system.config, &system.deployment.signals_dead_letter_url).await? {
        match gameforge_signals::EventEnvelope::from_json(message.body().unwrap_or_default().as_bytes()) {
            Ok(_) => report.valid_signals_dead_lettered += 1,
            Err(_) => report.malformed_events_dead_lettered += 1,
        }
    }
    for message in gameforge_localaws::drain_queue(&system.config, &system.deployment.job_dead_letter_url).await? {
        match GenerationJob::from_json(message.body().unwrap_or_default().as_bytes()) {
            // The poison rule answers a job `failed` and moves it aside by design; the backend got its answer.
            Ok(job) if report.failed_as_poison.contains(&job.job_id) => {}
            Ok(_) => report.valid_jobs_dead_lettered += 1,
            Err(_) => report.malformed_jobs_dead_lettered += 1,
        }
    }
    if !report.lost.is_empty() && report.lost.len() == ids.len() {
        bail!("no job completed: the run did not work at all");
    }
    Ok(report)
}

/// The job a worker is running: its open run in the timeline, from the worker's own log.
async fn running_job(system: &System, instance: &str) -> Option<String> {
    system.timeline.chart("").lanes.into_iter().find(|l| l.instance_id == instance).and_then(|lane| {
        lane.jobs.into_iter().rev().find(|j| j.outcome == crate::chart::RunOutcome::Running).map(|j| j.job_id)
    })
}

async fn collect(sqs: aws_sdk_sqs::Client, queue: String, replies: Arc<Mutex<Replies>>, started: Instant) {
    loop {
        let Ok(answer) =
            sqs.receive_message().queue_url(&queue).max_number_of_messages(10).wait_time_seconds(1).send().await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for message in answer.messages() {
            if let Ok(result) = JobResult::from_json(message.body().unwrap_or_default().as_bytes()) {
                let at = started.elapsed().as_secs_f64();
                let mut replies = replies.lock().unwrap_or_else(|p| p.into_inner());
                if replies.seen.insert(message.message_id().unwrap_or_default().to_owned()) {
                    replies.by_job.entry(result.job_id.clone()).or_default().push((result, at));
                }
            }
            // Deleting may be faulted too; a result seen again is counted as a repeat, which it is.
            let _ = sqs
                .delete_message()
                .queue_url(&queue)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await;
        }
    }
}

/// The sample events that ask for action, with their names: the ones duplicated during the run.
fn duplicate_candidates() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for file in tools::event_samples() {
        let name = file.strip_prefix(tools::repo_root().join("events")).unwrap_or(&file).display().to_string();
        if name.starts_with("ec2/spot")
            || name.starts_with("ec2/rebalance")
            || name.starts_with("autoscaling/launch-unsuccessful-insufficient")
        {
            let body = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            out.push((name, body));
        }
    }
    if out.is_empty() {
        bail!("no samples to duplicate under events/");
    }
    Ok(out)
}

const MALFORMED_EVENTS: &[&str] = &[
    "not json at all",
    "{\"version\": \"0\", \"id\": \"x\"}",
    "{\"detail-type\": 42, \"source\": [\"aws.ec2\"], \"detail\": \"oops\"}",
    "[1, 2, 3]",
    "{\"version\":\"0\",\"id\":\"trunc",
];

/// Messages no worker can answer (no job id to answer under): they must end in the job DLQ with a reason. (A
/// malformed job that does carry an id is answered `rejected` instead, which the worker's own tests cover.)
const MALFORMED_JOBS: &[&str] = &["definitely not a job", "{\"prompt\": \"a job without an id\"}", "[\"a\", \"list\"]"];

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "reliability run: {} jobs, seed {}, {:.0} s", self.jobs, self.seed, self.duration_s)?;
        writeln!(f, "  jobs succeeded           {}/{}", self.succeeded, self.jobs)?;
        writeln!(f, "  jobs lost                {}", self.lost.len())?;
        writeln!(f, "  jobs failed as poison    {} (their worker died under them twice)", self.failed_as_poison.len())?;
        writeln!(f, "  conflicting results      {}", self.conflicting_results.len())?;
        writeln!(
            f,
            "  final but never replied  {} {:?}",
            self.unannounced.len(),
            self.unannounced.iter().take(5).collect::<Vec<_>>()
        )?;
        writeln!(
            f,
            "  repeated announcements   {} (identical result messages; at-least-once)",
            self.repeated_announcements
        )?;
        writeln!(f, "  worker kills (SIGKILL)   {}", self.worker_kills)?;
        writeln!(f, "  worker crashes           {} (panics, unexpected signals)", self.worker_crashes)?;
        writeln!(
            f,
            "  worker error exits       {} (a start that failed under injected errors; restarted)",
            self.worker_error_exits
        )?;
        writeln!(f, "  function crashes         {}", self.function_crashes)?;
        writeln!(f, "  calls IAM would deny     {}", self.iam_denials.len())?;
        writeln!(
            f,
            "  AWS faults answered      {} (throttling, 500, 503 on {})",
            self.aws_faults_injected,
            SERVICES.join(", ")
        )?;
        writeln!(
            f,
            "  duplicated events        {} sent twice, {} suppressed",
            self.duplicate_events_sent, self.duplicate_events_suppressed
        )?;
        writeln!(
            f,
            "  malformed events         {} sent, {} in the signals DLQ",
            self.malformed_events_sent, self.malformed_events_dead_lettered
        )?;
        writeln!(
            f,
            "  malformed jobs           {} sent, {} in the job DLQ",
            self.malformed_jobs_sent, self.malformed_jobs_dead_lettered
        )?;
        writeln!(
            f,
            "  valid work dead-lettered {} job(s), {} signal(s)",
            self.valid_jobs_dead_lettered, self.valid_signals_dead_lettered
        )?;
        let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for fault in &self.faults {
            if let Some(r) = fault.recovered_after_s {
                by_kind.entry(fault.kind.as_str()).or_default().push(r);
            }
        }
        writeln!(f, "  time to recover (s)      p50 / max, per fault kind:")?;
        for (kind, mut times) in by_kind {
            times.sort_by(f64::total_cmp);
            let p50 = times[times.len() / 2];
            let max = times[times.len() - 1];
            writeln!(f, "    {kind:<22} {p50:>6.1} / {max:>6.1}  ({} faults)", times.len())?;
        }
        Ok(())
    }
}

/// When the report is acceptable: nothing lost, no result disagreeing, nothing crashed on its own, every bad
/// input dealt with.
pub fn verdict(report: &Report) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if !report.lost.is_empty() {
        problems.push(format!(
            "{} job(s) lost: {:?}",
            report.lost.len(),
            report.lost.iter().take(10).collect::<Vec<_>>()
        ));
    }
    if !report.unannounced.is_empty() {
        problems.push(format!("results never announced: {:?}", report.unannounced));
    }
    if !report.conflicting_results.is_empty() {
        problems.push(format!("conflicting results: {:?}", report.conflicting_results));
    }
    if report.worker_crashes > 0 || report.function_crashes > 0 {
        problems.push(format!("crashes: {} worker(s), {} function(s)", report.worker_crashes, report.function_crashes));
    }
    if report.valid_jobs_dead_lettered > 0 || report.valid_signals_dead_lettered > 0 {
        problems.push(format!(
            "valid work dead-lettered: {} job(s), {} signal(s)",
            report.valid_jobs_dead_lettered, report.valid_signals_dead_lettered
        ));
    }
    if !report.iam_denials.is_empty() {
        problems.push(format!("calls IAM would deny: {:?}", report.iam_denials.iter().take(5).collect::<Vec<_>>()));
    }
    if report.malformed_events_dead_lettered < report.malformed_events_sent {
        problems.push("a malformed event was not dead-lettered".into());
    }
    if report.malformed_jobs_dead_lettered < report.malformed_jobs_sent {
        problems.push("a malformed job was not dead-lettered".into());
    }
    if problems.is_empty() { Ok(()) } else { bail!(problems.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_gaps_average_their_mean_and_stay_bounded() {
        let mut rng = StdRng::seed_from_u64(1);
        let gaps: Vec<f64> = (0..2000).map(|_| next_gap(&mut rng, 5.0).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((4.0..6.0).contains(&mean), "{mean}");
        assert!(gaps.iter().all(|g| (0.2..=20.0).contains(g)));
    }

    #[test]
    fn malformed_inputs_are_really_malformed() {
        for body in MALFORMED_EVENTS {
            assert!(gameforge_signals::classify_json(body.as_bytes()).is_err(), "{body}");
        }
        for body in MALFORMED_JOBS {
            assert!(GenerationJob::from_json(body.as_bytes()).is_err(), "{body}");
        }
    }
}
