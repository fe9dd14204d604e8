//! The job loop: one message running and at most one waiting, fetched just in time (when the loop is idle or
//! the running job is about to end), a visibility heartbeat for each, the image
//! written before the result is sent and the result sent before the message is deleted, and on a stop request
//! (SIGTERM, spot notice) no new work, the running job finished only if it fits before the kill.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use gameforge_aws::backoff::Backoff;
use gameforge_aws::metrics::Metrics;
use gameforge_contract::{CONTRACT_VERSION, ErrorClass, GenerationJob, JobResult, JobStatus, Timings};
use gameforge_jobs::{Claim, Finish, JobKey, JobRecord, JobStore, ProgressAnswer};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::decide::{Delivery, Judge, Verdict, request_for};
use super::lanes::Lanes;
use super::model::ModelThread;
use super::ports::{Announcement, Announcer, JobQueue, ObjectStore, PortError, Stored};
use crate::error::PipelineError;
use crate::image::RgbImage;

/// How the service behaves; the defaults suit ECS on spot instances.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// How long a received message stays hidden; the heartbeat renews it every third of this.
    pub visibility: Duration,
    /// Long-poll wait of one receive.
    pub wait: Duration,
    /// Kept free before the kill for writing the image and the result.
    pub margin: Duration,
    /// A progress event every this many steps (`None`: none).
    pub progress_every: Option<usize>,
    /// Progress is written to the job status store (which answers with any cancellation) at most this often.
    pub status_every: Duration,
    /// How long a message whose handling failed on AWS stays hidden before it is offered again, by its receive
    /// count: with the job queue's `maxReceiveCount` it sets the outage a job rides out (tests/timeouts.rs).
    pub retry: Backoff,
    /// A job whose runs ended this many times without an answer or a clean release (its worker died) is
    /// poison: answered `failed` and moved to the dead-letter queue instead of being run again.
    pub crash_limit: u32,
    /// The next message is fetched once the running job is expected to end within this (its pace so far):
    /// fetched earlier, it would wait behind the running job while other workers may be idle.
    pub prefetch_lead: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            visibility: Duration::from_secs(60),
            wait: Duration::from_secs(20),
            margin: Duration::from_secs(10),
            progress_every: None,
            status_every: Duration::from_secs(1),
            retry: Backoff::new(Duration::from_secs(2), Duration::from_secs(120)),
            crash_limit: 2,
            prefetch_lead: Duration::from_secs(3),
        }
    }
}

/// Health as the readiness check reports it.
#[derive(Debug, Default)]
pub struct Health(AtomicU8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Starting,
    Ready,
    Draining,
}

impl Health {
    pub fn set(&self, state: HealthState) {
        self.0.store(state as u8, Ordering::SeqCst);
    }

    pub fn get(&self) -> HealthState {
        match self.0.load(Ordering::SeqCst) {
            0 => HealthState::Starting,
            1 => HealthState::Ready,
            _ => HealthState::Draining,
        }
    }
}

/// What a run of the loop did, for the exit log and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub succeeded: u64,
    pub failed: u64,
    pub rejected: u64,
    pub dead_lettered: u64,
    pub released: u64,
    pub released_on_interruption: u64,
    /// Messages dropped because another delivery of the same job id ran it or runs it.
    pub duplicates: u64,
    /// Jobs a CPU worker handed to the GPU-only queue.
    pub to_gpu: u64,
}

/// A received message whose visibility is kept up until it is settled.
struct Lease {
    delivery: Delivery,
    heartbeat: JoinHandle<()>,
    received: Instant,
    /// When the loop took it up (later than `received` for a prefetched message).
    picked: Instant,
    /// Set to let the receiver fetch the next message (the job is near its end).
    prefetch: Arc<watch::Sender<bool>>,
}

impl Lease {
    fn start<Q: JobQueue>(
        queue: Arc<Q>,
        delivery: Delivery,
        visibility: Duration,
        prefetch: Arc<watch::Sender<bool>>,
    ) -> Self {
        let receipt = delivery.receipt.clone();
        let heartbeat = tokio::spawn(async move {
            let every = (visibility / 3).max(Duration::from_millis(200));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = queue.set_visibility(&receipt, visibility).await {
                    tracing::warn!(error = %e, "visibility heartbeat failed");
                }
            }
        });
        let now = Instant::now();
        Self { delivery, heartbeat, received: now, picked: now, prefetch }
    }

    fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }
}

/// The running service's parts.
#[derive(Debug)]
pub struct Service<Q, O, A, J> {
    pub queue: Arc<Lanes<Q>>,
    pub store: Arc<O>,
    pub jobs: Arc<J>,
    pub announce: Arc<A>,
    pub model: ModelThread,
    pub judge: Judge,
    pub config: ServiceConfig,
    pub health: Arc<Health>,
}

/// The instant the process will be killed, once a stop has been asked for.
pub type StopSignal = watch::Receiver<Option<Instant>>;

enum Outcome {
    Done(JobStatus),
    /// Unanswerable: moved to the dead-letter queue with its reason.
    DeadLettered,
    Released {
        interruption: bool,
    },
    /// Another delivery of the same job id has it.
    Duplicate,
    /// Moved to the GPU-only queue.
    ToGpu,
}

impl<Q: JobQueue, O: ObjectStore, A: Announcer, J: JobStore> Service<Q, O, A, J> {
    /// Serves until `stop` carries a kill deadline, then drains and returns.
    pub async fn run(&self, mut stop: StopSignal) -> RunSummary {
        let mut summary = RunSummary::default();
        // Capacity one, and a slot reserved before each receive: one message waiting at most. And a receive only
        // while `prefetch` allows one: set when the loop is idle or the running job nears its end, spent by each
        // message fetched, so a message never sits behind a long job while other workers could run it.
        let (tx, mut rx) = mpsc::channel::<Lease>(1);
        let prefetch = Arc::new(watch::channel(true).0);
        let receiver = {
            let (queue, wait, visibility) = (Arc::clone(&self.queue), self.config.wait, self.config.visibility);
            let mut stop = stop.clone();
            let prefetch = Arc::clone(&prefetch);
            let mut allowed = prefetch.subscribe();
            tokio::spawn(async move {
                let mut failures = 0u32;
                loop {
                    let Ok(permit) = tx.reserve().await else { return };
                    loop {
                        if stop.borrow().is_some() {
                            return;
                        }
                        if *allowed.borrow_and_update() {
                            break;
                        }
                        tokio::select! {
                            changed = allowed.changed() => if changed.is_err() { return },
                            changed = stop.changed() => if changed.is_err() { return },
                        }
                    }
                    // Never cancelled mid-call: SQS may already have handed a message over, and a dropped answer
                    // would leave that job hidden for the queue's whole visibility timeout. A receive lasts at most
                    // the long-poll wait.
                    let received = queue.receive(wait).await;
                    match received {
                        Ok(Some(delivery)) if stop.borrow().is_some() => {
                            let _ = queue.set_visibility(&delivery.receipt, Duration::ZERO).await;
                            return;
                        }
                        Ok(Some(delivery)) => {
                            failures = 0;
                            prefetch.send_replace(false);
                            permit.send(Lease::start(Arc::clone(&queue), delivery, visibility, Arc::clone(&prefetch)));
                        }
                        Ok(None) => failures = 0,
                        Err(e) => {
                            tracing::warn!(error = %e, "receive failed");
                            let delay = Backoff::new(Duration::from_millis(200), Duration::from_secs(20))
                                .delay(failures, &mut rand::rng());
                            failures += 1;
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            })
        };
        loop {
            let lease = tokio::select! {
                lease = rx.recv() => lease,
                _ = stop.changed() => None,
            };
            let Some(mut lease) = lease else { break };
            lease.picked = Instant::now();
            match self.handle(&lease, &stop).await {
                Ok(Outcome::Done(JobStatus::Succeeded)) => summary.succeeded += 1,
                Ok(Outcome::Done(JobStatus::Failed)) => summary.failed += 1,
                Ok(Outcome::Done(JobStatus::Rejected)) => summary.rejected += 1,
                Ok(Outcome::DeadLettered) => summary.dead_lettered += 1,
                Ok(Outcome::Released { interruption }) => {
                    summary.released += 1;
                    summary.released_on_interruption += u64::from(interruption);
                }
                Ok(Outcome::Duplicate) => summary.duplicates += 1,
                Ok(Outcome::ToGpu) => summary.to_gpu += 1,
                Err(e) => {
                    // AWS failed us mid-way: hand the message back after a backoff; the next delivery redoes
                    // the job and overwrites the same image key.
                    tracing::warn!(job_message = %lease.delivery.message_id, error = %e, "releasing after a failure");
                    lease.stop_heartbeat();
                    let attempt = lease.delivery.receive_count.saturating_sub(1);
                    let delay = self.config.retry.redelivery(attempt, &mut rand::rng());
                    let _ = self.queue.set_visibility(&lease.delivery.receipt, delay).await;
                    summary.released += 1;
                }
            }
            lease.stop_heartbeat();
            prefetch.send_replace(true);
            if stop.borrow().is_some() {
                break;
            }
        }
        self.health.set(HealthState::Draining);
        // Whatever was fetched but not started goes straight back to the queue, including what a receive still
        // in flight brings (the receiver hands that back itself).
        rx.close();
        let _ = tokio::time::timeout(self.config.wait.saturating_add(Duration::from_secs(5)), receiver).await;
        while let Some(lease) = rx.recv().await {
            lease.stop_heartbeat();
            if self.queue.set_visibility(&lease.delivery.receipt, Duration::ZERO).await.is_ok() {
                summary.released += 1;
            }
        }
        summary
    }

    async fn handle(&self, lease: &Lease, stop: &StopSignal) -> Result<Outcome, PortError> {
        let delivery = &lease.delivery;
        match self.judge.judge(delivery, Utc::now()) {
            Verdict::DeadLetter { reason } => {
                tracing::warn!(message = %delivery.message_id, %reason, "to the dead-letter queue");
                lease.stop_heartbeat();
                self.queue.dead_letter(delivery, &reason).await?;
                Ok(Outcome::DeadLettered)
            }
            Verdict::Answer { key, job, result, reply_to, dead_letter } => {
                let settle = dead_letter.map_or(Settle::Delete, Settle::DeadLetter);
                let answer = Answer {
                    key: &key,
                    job: job.as_deref(),
                    result: &result,
                    reply_to: reply_to.as_deref(),
                    steps_per_second: None,
                };
                Ok(self.answer(lease, answer, settle, Instant::now()).await?.outcome())
            }
            Verdict::ToGpu { key, job_id, reason } => {
                tracing::info!(job_id, %reason, "to the GPU-only queue");
                lease.stop_heartbeat();
                self.queue.move_to_gpu_only(delivery).await?;
                // The job has moved: its status saying why is worth a try, not a reason to move it again.
                if let Err(e) = self.jobs.mark_gpu_only(&key, &reason.to_string()).await {
                    tracing::warn!(job_id, error = %e, "could not record why the job waits for a GPU");
                }
                Ok(Outcome::ToGpu)
            }
            Verdict::Run { key, job } => self.run_job(lease, &key, &job, stop).await,
        }
    }

    async fn run_job(
        &self,
        lease: &Lease,
        key: &JobKey,
        job: &GenerationJob,
        stop: &StopSignal,
    ) -> Result<Outcome, PortError> {
        let delivery = &lease.delivery;
        let owner = delivery.message_id.as_str();
        let record = match self.jobs.claim(key, job, owner, self.judge.placement.as_ref()).await? {
            Claim::Run(record) => record,
            Claim::Final(record) => {
                // Cancelled before it started, or answered on an earlier delivery that died before deleting
                // the message: the stored result is the answer, announced now if it never was.
                tracing::info!(job_id = %job.job_id, state = record.state.as_str(), "already final; not running it");
                let (status, refusal) = self.announce_stored(&record, job.reply_to.as_deref()).await?;
                lease.stop_heartbeat();
                self.settle(delivery, refusal.map_or(Settle::Delete, Settle::DeadLetter)).await?;
                return Ok(Outcome::Done(status));
            }
            Claim::Busy(record) => {
                // A second message of the job (sent twice with a plain `SendMessage`): the delivery that owns it
                // answers; should its worker die, that message comes back, not this one.
                tracing::info!(job_id = %job.job_id, holder = ?record.delivery, "another delivery runs this job");
                lease.stop_heartbeat();
                self.queue.delete(&delivery.receipt).await?;
                return Ok(Outcome::Duplicate);
            }
            Claim::Refused(reason) => {
                tracing::warn!(job_id = %job.job_id, %reason, "not the job recorded under its id; to the dead-letter queue");
                lease.stop_heartbeat();
                self.queue.dead_letter(delivery, &reason).await?;
                return Ok(Outcome::DeadLettered);
            }
        };
        // The recorded request is the job: a copy of its message may differ in what the request's fingerprint
        // leaves out (where the result goes, the deadline, the labels).
        let job = record.job.clone().unwrap_or_else(|| job.clone());
        let outcome = self.run_claimed(lease, key, &job, &record, stop).await;
        if outcome.is_err() {
            // AWS failed this run and the message goes back: a hand-back, not a crash, so that a job is not taken
            // for poison because the services around it failed (the record ignores this once it is final).
            if let Err(e) = self.jobs.release(key, owner).await {
                tracing::warn!(error = %e, "could not record the release after a failure");
            }
        }
        outcome
    }

    /// Runs a job this delivery has claimed, to its answer or its hand-back.
    async fn run_claimed(
        &self,
        lease: &Lease,
        key: &JobKey,
        job: &GenerationJob,
        record: &JobRecord,
        stop: &StopSignal,
    ) -> Result<Outcome, PortError> {
        let delivery = &lease.delivery;
        let owner = delivery.message_id.as_str();
        let reply_to = job.reply_to.as_deref();
        // The record counts this run; the others that were neither answered nor handed back died with their
        // worker. Receive counts cannot tell: clean hand-backs (a drain, a spot notice) raise them too.
        let crashes = record.crashes().saturating_sub(1);
        if crashes >= self.config.crash_limit {
            let message =
                format!("the job ended {crashes} runs without an answer (its workers died): not running it again");
            let result =
                self.judge.result(job, delivery, Utc::now(), JobStatus::Failed, ErrorClass::Poison, message.clone());
            let answered = self
                .answer(
                    lease,
                    Answer { key, job: Some(job), result: &result, reply_to, steps_per_second: None },
                    Settle::DeadLetter(message),
                    Instant::now(),
                )
                .await?;
            return Ok(answered.outcome());
        }
        let seed = job.seed.unwrap_or_else(|| rand::rng().random_range(0..=9_007_199_254_740_991u64));
        let started_at = Utc::now();
        let started = Instant::now();
        tracing::info!(
            job_id = %job.job_id,
            attempt = delivery.receive_count,
            receive_to_start_ms = lease.received.elapsed().as_secs_f64() * 1000.0,
            pick_to_start_ms = lease.picked.elapsed().as_secs_f64() * 1000.0,
            "job started"
        );
        let halt = Arc::new(AtomicBool::new(false));
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let generation = self.model.generate(request_for(job, seed), Arc::clone(&halt), progress_tx);
        tokio::pin!(generation);
        let mut stop = stop.clone();
        let mut interrupted = false;
        let mut stopped_by: Option<ProgressAnswer> = None;
        let mut last_step = (0usize, job.steps as usize, Duration::ZERO);
        // The claim just wrote the record: the first progress write waits a full interval, so short jobs make none.
        let mut last_status = Instant::now();
        let generated = loop {
            tokio::select! {
                result = &mut generation => break result,
                Some(p) = progress_rx.recv() => {
                    last_step = (p.step, p.total, p.elapsed);
                    if !*lease.prefetch.borrow() && self.ends_within(last_step, self.config.prefetch_lead) {
                        lease.prefetch.send_replace(true);
                    }
                    if let Some(every) = self.config.progress_every
                        && p.step % every == 0 && p.step < p.total
                        && let Err(e) = self.announce.progress(&job.job_id, p.step, p.total).await
                    {
                        tracing::warn!(error = %e, "progress event failed");
                    }
                    if stopped_by.is_none() && last_status.elapsed() >= self.config.status_every {
                        last_status = Instant::now();
                        match self.jobs.progress(key, owner, p.step as u32, p.total as u32).await {
                            Ok(ProgressAnswer::Continue) => {}
                            Ok(answer) => {
                                stopped_by = Some(answer);
                                halt.store(true, Ordering::SeqCst);
                            }
                            Err(e) => tracing::warn!(error = %e, "progress update failed"),
                        }
                    }
                    if !interrupted && let Some(kill) = *stop.borrow() && !self.fits(last_step, kill) {
                        interrupted = true;
                        halt.store(true, Ordering::SeqCst);
                    }
                }
                changed = stop.changed(), if !interrupted => {
                    if changed.is_err() { continue; }
                    if let Some(kill) = *stop.borrow() && !self.fits(last_step, kill) {
                        interrupted = true;
                        halt.store(true, Ordering::SeqCst);
                    }
                }
            }
        };
        let generation_time = started.elapsed();
        let done = Instant::now();
        let (status, class, message) = match generated {
            Err(PipelineError::Cancelled { .. }) if stopped_by == Some(ProgressAnswer::Lost) => {
                tracing::warn!(job_id = %job.job_id, "another delivery took the job over; stopping without an answer");
                lease.stop_heartbeat();
                return Ok(Outcome::Duplicate);
            }
            Err(PipelineError::Cancelled { .. }) if interrupted => {
                lease.stop_heartbeat();
                if let Err(e) = self.jobs.release(key, owner).await {
                    tracing::warn!(error = %e, "could not record the clean release");
                }
                self.queue.set_visibility(&delivery.receipt, Duration::ZERO).await?;
                tracing::info!(job_id = %job.job_id, "released: it would not finish before the instance goes");
                let mut metrics = self.metrics();
                metrics.count("released_on_interruption", 1);
                metrics.emit();
                return Ok(Outcome::Released { interruption: true });
            }
            Err(e) => {
                let (status, class) = match &e {
                    PipelineError::Cancelled { .. } => (JobStatus::Failed, ErrorClass::Cancelled),
                    PipelineError::InvalidRequest(_) => (JobStatus::Rejected, ErrorClass::InvalidJob),
                    PipelineError::DoesNotFit(_) => (JobStatus::Failed, ErrorClass::OutOfMemory),
                    _ => (JobStatus::Failed, ErrorClass::Generation),
                };
                let message = if stopped_by == Some(ProgressAnswer::Cancel) {
                    "cancelled by request".to_string()
                } else {
                    e.to_string()
                };
                (status, class, message)
            }
            Ok(generated) => {
                let image = RgbImage::from_tensor(&generated.image)
                    .and_then(|img| img.to_png(&png_text(job, seed, &self.judge.model_id)))
                    .map_err(|e| PortError::new("EncodePng", e))?;
                let location = job.image_location();
                if self.store.put(&location, image, "image/png", &record.incarnation()).await? == Stored::Taken {
                    let message = format!(
                        "{location} holds the image of an earlier job {}, and an image is never overwritten: \
                         submit under a new job id",
                        job.job_id
                    );
                    (JobStatus::Failed, ErrorClass::Storage, message)
                } else {
                    let finished_at = Utc::now();
                    let submitted_at = job.submitted_at.min(started_at);
                    let result = JobResult {
                        version: CONTRACT_VERSION,
                        job_id: job.job_id.clone(),
                        status: JobStatus::Succeeded,
                        image: Some(location),
                        error: None,
                        timings: Timings {
                            submitted_at,
                            started_at: Some(started_at),
                            finished_at,
                            queue_wait_ms: Some((started_at - submitted_at).num_milliseconds().max(0) as u64),
                            generation_ms: Some(generation_time.as_millis() as u64),
                        },
                        placement: self.judge.placement.clone(),
                        tier: Some(self.judge.tier()),
                        seed: Some(seed),
                        prompt_truncated: generated.dropped_tokens > 0,
                        attempt: delivery.receive_count.max(1),
                        labels: job.labels.clone(),
                    };
                    let steps: f64 = generated.timings.steps.iter().map(Duration::as_secs_f64).sum();
                    let steps_per_second = (steps > 0.0).then(|| generated.timings.steps.len() as f64 / steps);
                    let answer = Answer { key, job: Some(job), result: &result, reply_to, steps_per_second };
                    let answered = self.answer(lease, answer, Settle::Delete, done).await?;
                    return Ok(answered.outcome());
                }
            }
        };
        let mut result = self.judge.result(job, delivery, Utc::now(), status, class, message);
        result.seed = Some(seed);
        result.timings.started_at = Some(started_at.max(result.timings.submitted_at));
        let answer = Answer { key, job: Some(job), result: &result, reply_to, steps_per_second: None };
        let answered = self.answer(lease, answer, Settle::Delete, done).await?;
        Ok(answered.outcome())
    }

    /// Records the final result in the status store, announces it, then settles the message. The store takes
    /// it only where this delivery holds the claim or no delivery does: a duplicate delivery never answers for
    /// the run of another. A crash in between leaves a final record whose next delivery announces the stored
    /// result instead of answering twice; a job that already had a final result keeps it.
    async fn answer(
        &self,
        lease: &Lease,
        answer: Answer<'_>,
        settle: Settle,
        done: Instant,
    ) -> Result<Answered, PortError> {
        let Answer { key, job, result, reply_to, steps_per_second } = answer;
        let delivery = &lease.delivery;
        let (answered, status, settle) = match self.jobs.finish(key, result, job, &delivery.message_id).await? {
            Finish::Recorded => {
                let refusal = self.announce_result(key, result, reply_to, false).await?;
                (Answered::Recorded(result.status), result.status, refusal.map_or(settle, Settle::DeadLetter))
            }
            // Its answer stands; the message has nothing left to say, even on its last delivery.
            Finish::AlreadyFinal(record) => {
                let (status, refusal) = self.announce_stored(&record, reply_to).await?;
                (Answered::Stood(status), status, refusal.map_or(Settle::Delete, Settle::DeadLetter))
            }
            Finish::Busy(record) if job.is_some() => {
                // Another delivery of this job runs it (a duplicate message past its deadline, or counted as
                // poison): that run's answer will be the job's, and this message goes.
                tracing::info!(
                    job_id = %result.job_id,
                    holder = ?record.delivery,
                    "another delivery runs this job; its answer stands, not this one"
                );
                lease.stop_heartbeat();
                self.queue.delete(&delivery.receipt).await?;
                return Ok(Answered::Duplicate);
            }
            Finish::Busy(_) => {
                let reason = format!("not a valid job, and job {} runs under another delivery", result.job_id);
                lease.stop_heartbeat();
                self.queue.dead_letter(delivery, &reason).await?;
                return Ok(Answered::DeadLettered);
            }
            Finish::Refused(reason) => {
                tracing::warn!(job_id = %result.job_id, %reason, "not the job recorded under its id; to the dead-letter queue");
                lease.stop_heartbeat();
                self.queue.dead_letter(delivery, &reason).await?;
                return Ok(Answered::DeadLettered);
            }
        };
        let done_to_result = done.elapsed();
        lease.stop_heartbeat();
        self.settle(delivery, settle).await?;
        tracing::info!(
            job_id = %result.job_id,
            status = ?status,
            done_to_result_ms = done_to_result.as_secs_f64() * 1000.0,
            "job finished"
        );
        if matches!(answered, Answered::Recorded(_)) {
            self.record(result, steps_per_second);
        }
        Ok(answered)
    }

    async fn settle(&self, delivery: &Delivery, settle: Settle) -> Result<(), PortError> {
        match settle {
            Settle::Delete => self.queue.delete(&delivery.receipt).await,
            Settle::DeadLetter(reason) => self.queue.dead_letter(delivery, &reason).await,
        }
    }

    /// Sends a recorded result to the reply queue and the event bus, and records that it was; a reply queue that
    /// refuses for good leaves the job unannounced and returns why, for the message to be set aside with.
    async fn announce_result(
        &self,
        key: &JobKey,
        result: &JobResult,
        reply_to: Option<&str>,
        replied: bool,
    ) -> Result<Option<String>, PortError> {
        // The reply is recorded apart from the event, so that a retry after the bus failed (hand-backs while
        // EventBridge is away) sends the backend its reply once, not once per delivery.
        let refusal = if replied {
            None
        } else {
            match self.announce.reply(result, reply_to).await? {
                Announcement::Delivered => {
                    if reply_to.is_some() {
                        self.jobs.mark_replied(key).await?;
                    }
                    None
                }
                Announcement::ReplyRefused(reason) => {
                    tracing::warn!(job_id = %result.job_id, %reason, "result recorded but not announced");
                    Some(reason)
                }
            }
        };
        self.announce.result_event(result).await?;
        if refusal.is_none() {
            self.jobs.mark_announced(key).await?;
        }
        Ok(refusal)
    }

    /// Announces a final record's result unless that was done already. The recorded request says where the
    /// result goes; `fallback` (the message's) only for a record without one.
    async fn announce_stored(
        &self,
        record: &JobRecord,
        fallback: Option<&str>,
    ) -> Result<(JobStatus, Option<String>), PortError> {
        let result = record
            .result
            .as_ref()
            .ok_or_else(|| PortError::new("read job record", format!("final job {} has no result", record.job_id)))?;
        if record.announced {
            return Ok((result.status, None));
        }
        let reply_to = match &record.job {
            Some(job) => job.reply_to.as_deref(),
            None => fallback,
        };
        let refusal = self.announce_result(&record.key(), result, reply_to, record.replied).await?;
        Ok((result.status, refusal))
    }

    /// Whether the rest of the job (remaining steps at the pace so far, plus a decode of about two steps and the
    /// margin) ends before the kill.
    fn fits(&self, progress: (usize, usize, Duration), kill: Instant) -> bool {
        // Checked: a configured margin too large to add to the clock never fits.
        remaining(progress)
            .and_then(|remaining| Instant::now().checked_add(remaining)?.checked_add(self.config.margin))
            .is_some_and(|end| end < kill)
    }

    /// Whether the rest of the job is expected to take at most `lead`.
    fn ends_within(&self, progress: (usize, usize, Duration), lead: Duration) -> bool {
        remaining(progress).is_some_and(|remaining| remaining <= lead)
    }

    fn metrics(&self) -> Metrics {
        Metrics::new("gameforge/worker").dimension("model", self.judge.model_id.clone())
    }

    fn record(&self, result: &JobResult, steps_per_second: Option<f64>) {
        let mut metrics = self.metrics();
        let status = match result.status {
            JobStatus::Succeeded => "results_succeeded",
            JobStatus::Failed => "results_failed",
            JobStatus::Rejected => "results_rejected",
        };
        metrics.count(status, 1);
        if let Some(wait) = result.timings.queue_wait_ms {
            metrics.duration("queue_wait", Duration::from_millis(wait));
        }
        if let Some(generation) = result.timings.generation_ms {
            metrics.duration("generation_time", Duration::from_millis(generation));
        }
        if let Some(rate) = steps_per_second {
            metrics.rate("steps_per_second", rate);
        }
        metrics.emit();
    }
}

/// A final answer to give: the job's key, the request it is about (`None` for a message that is not a valid
/// job), the result, and where it goes besides the event bus. Its metrics are emitted once it is the job's.
struct Answer<'a> {
    key: &'a JobKey,
    job: Option<&'a GenerationJob>,
    result: &'a JobResult,
    reply_to: Option<&'a str>,
    /// The generation's pace, for the metrics of a success.
    steps_per_second: Option<f64>,
}

/// What becomes of an answered job's message.
enum Settle {
    Delete,
    DeadLetter(String),
}

/// What became of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    /// This answer is the job's.
    Recorded(JobStatus),
    /// An earlier final result stands (announced now if it never was).
    Stood(JobStatus),
    /// Another delivery holds the claim and answers; this message was removed.
    Duplicate,
    /// Not the job recorded under its key: the message went to the dead-letter queue, the record untouched.
    DeadLettered,
}

impl Answered {
    fn outcome(self) -> Outcome {
        match self {
            Answered::Recorded(status) | Answered::Stood(status) => Outcome::Done(status),
            Answered::Duplicate => Outcome::Duplicate,
            Answered::DeadLettered => Outcome::DeadLettered,
        }
    }
}

/// The rest of a job at its pace so far: its remaining steps plus a decode of about two steps; unknown before
/// the first step.
fn remaining((step, total, elapsed): (usize, usize, Duration)) -> Option<Duration> {
    let per_step = if step == 0 { return None } else { elapsed / step as u32 };
    per_step.checked_mul(u32::try_from(total.saturating_sub(step)).unwrap_or(u32::MAX).saturating_add(2))
}

fn png_text(job: &GenerationJob, seed: u64, model: &str) -> Vec<(String, String)> {
    let parameters = serde_json::json!({
        "job_id": job.job_id, "prompt": job.prompt, "negative_prompt": job.negative_prompt,
        "width": job.width, "height": job.height, "steps": job.steps, "guidance": job.guidance,
        "seed": seed, "scheduler": job.scheduler, "model": model,
        "generator": concat!("sdxl-worker ", env!("CARGO_PKG_VERSION")),
    });
    vec![
        ("parameters".into(), parameters.to_string()),
        ("prompt".into(), job.prompt.clone()),
        ("seed".into(), seed.to_string()),
    ]
}
