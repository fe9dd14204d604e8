//! One invocation: an SQS batch (each record one EventBridge event) or a single event delivered directly.
//! Each event is classified, claimed in the dedup store, turned into control jobs, and marked done. Records fail
//! alone: a malformed one goes to the dead-letter queue with its reason, a transient failure is retried after a
//! jittered backoff, and the rest of the batch is acknowledged.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gameforge_aws::backoff::Backoff;
use gameforge_aws::invocation::Deadline;
use gameforge_aws::metrics::Metrics;
use gameforge_aws::sqs_batch::{Payload, SqsBatchResponse, SqsEvent, SqsMessage, SqsRecordExt};
use gameforge_contract::{IgnoreReason, Message, Signal};
use gameforge_signals::{EventEnvelope, classify, control_jobs};
use serde_json::{Value, json};

use crate::ports::{Claim, ControlSink, DedupStore, PortError, SignalQueue};

#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// The fleet whose control jobs this deployment writes (the FIFO message group).
    pub fleet: String,
    /// How long a claim protects an event when the invocation has no deadline (a direct call); under Lambda
    /// a claim lasts as long as the invocation can.
    pub claim_lease: Duration,
    /// How long a record that failed for a transient reason stays hidden before its next delivery, by its
    /// receive count: with the signals queue's `maxReceiveCount` it sets the outage a signal survives.
    pub retry: Backoff,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            fleet: "sdxl".into(),
            claim_lease: Duration::from_secs(30),
            retry: Backoff::new(Duration::from_secs(2), Duration::from_secs(120)),
        }
    }
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Emitted { kind: &'static str, control_jobs: usize },
    Ignored { reason: IgnoreReason },
    Duplicate { kind: &'static str },
}

/// Why one event could not be handled now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// It is not an EventBridge event and never will be.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Another invocation holds it; retry after its lease.
    #[error("event {event_id} is being processed by another invocation")]
    InFlight { event_id: String, lease_until: DateTime<Utc> },
    #[error("transient failure: {0}")]
    Transient(#[from] PortError),
}

#[derive(Debug)]
pub struct SignalHandler<D, C, Q> {
    config: HandlerConfig,
    dedup: D,
    control: C,
    queue: Q,
}

#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("payload is neither an SQS batch nor an EventBridge event: {0}")]
    Payload(String),
}

impl<D: DedupStore, C: ControlSink, Q: SignalQueue> SignalHandler<D, C, Q> {
    pub fn new(config: HandlerConfig, dedup: D, control: C, queue: Q) -> Self {
        Self { config, dedup, control, queue }
    }

    pub fn ports(&self) -> (&D, &C, &Q) {
        (&self.dedup, &self.control, &self.queue)
    }

    /// The Lambda entry point. An SQS batch answers with its partial failures; a direct event answers with its
    /// outcome, or fails so that EventBridge retries it.
    pub async fn handle(&self, payload: Value) -> Result<Value, InvocationError> {
        let payload = Payload::from_value(payload).map_err(|e| InvocationError::Payload(e.to_string()))?;
        self.handle_until(payload, Deadline::NONE).await
    }

    /// [`SignalHandler::handle`] within an invocation that is stopped at `deadline`.
    pub async fn handle_until(&self, payload: Payload, deadline: Deadline) -> Result<Value, InvocationError> {
        let started = Instant::now();
        let mut metrics = Metrics::new("gameforge").dimension("function", "on-signal");
        let answer = match payload {
            Payload::Batch(batch) => {
                let response = self.handle_batch(batch, deadline, &mut metrics).await;
                serde_json::to_value(response).map_err(|e| InvocationError::Payload(e.to_string()))
            }
            Payload::Direct(event) => {
                let outcome = self.handle_event_until(&event.to_string(), deadline).await;
                count(&mut metrics, &outcome);
                outcome.map(|outcome| describe(&outcome)).map_err(InvocationError::from)
            }
        };
        metrics.duration("invocation_latency", started.elapsed());
        metrics.emit();
        answer
    }

    pub async fn handle_batch(&self, batch: SqsEvent, deadline: Deadline, metrics: &mut Metrics) -> SqsBatchResponse {
        metrics.count("records", batch.records.len() as u64);
        let results = futures::future::join_all(
            batch
                .records
                .iter()
                .map(|record| async move { (record, self.handle_event_until(record.text(), deadline).await) }),
        )
        .await;

        let mut response = SqsBatchResponse::default();
        for (record, outcome) in results {
            count(metrics, &outcome);
            if let Err(error) = outcome
                && !self.settle_failure(record, &error).await
            {
                response.add_failure(record.id());
            }
        }
        response
    }

    /// Handles one event given as JSON text.
    pub async fn handle_event(&self, body: &str) -> Result<Outcome, RecordError> {
        self.handle_event_until(body, Deadline::NONE).await
    }

    async fn handle_event_until(&self, body: &str, deadline: Deadline) -> Result<Outcome, RecordError> {
        let event = EventEnvelope::from_json(body.as_bytes()).map_err(|e| RecordError::Malformed(e.to_string()))?;
        let signal = classify(&event);
        tracing::info!(
            event_id = %event.id,
            kind = signal.kind(),
            region = %signal.region(),
            source = %event.source,
            detail_type = %event.detail_type,
            signal = %signal.to_json(),
            "classified"
        );
        if let Signal::Ignored(ignored) = &signal {
            return Ok(Outcome::Ignored { reason: ignored.reason });
        }

        let owner = owner_token();
        let now = Utc::now();
        // Deduplication saves work; it is not what makes a repeat harmless (control ids are stable, the FIFO
        // queue and the executor drop repeats). So when the store cannot be reached the event is acted on
        // unclaimed rather than held back: a spot warning's two minutes do not wait for DynamoDB.
        let lease = deadline.lease(now.into(), self.config.claim_lease);
        let claimed = match self.dedup.claim(&event.id, &owner, now, lease).await {
            Ok(Claim::Claimed) => true,
            Ok(Claim::AlreadyDone) => {
                tracing::info!(event_id = %event.id, "duplicate event, already processed");
                return Ok(Outcome::Duplicate { kind: signal.kind() });
            }
            Ok(Claim::InFlight { lease_until }) => {
                return Err(RecordError::InFlight { event_id: event.id.clone(), lease_until });
            }
            Err(error) => {
                tracing::warn!(event_id = %event.id, %error, "dedup store unavailable; acting on the event unclaimed");
                false
            }
        };

        let jobs = control_jobs(&signal, &self.config.fleet, now);
        if let Err(error) = self.control.send(&jobs).await {
            if claimed && let Err(release) = self.dedup.release(&event.id, &owner).await {
                tracing::warn!(event_id = %event.id, %release, "could not release the claim; it will lapse");
            }
            return Err(error.into());
        }
        for job in &jobs {
            tracing::info!(event_id = %event.id, control_id = %job.control_id, control_job = %job.to_json(), "control job sent");
        }
        // Until this lands the claim still protects the event; if it never lands, a redelivery after the lease
        // re-sends the same control ids, which the FIFO queue drops within its deduplication window. The jobs
        // are out either way, so a failure here does not fail the event.
        if claimed && let Err(error) = self.dedup.complete(&event.id, &owner, Utc::now(), jobs.len()).await {
            tracing::warn!(event_id = %event.id, %error, "could not mark the event done; its claim will lapse");
        }
        Ok(Outcome::Emitted { kind: signal.kind(), control_jobs: jobs.len() })
    }

    /// Deals with a failed record. Returns true when the record is settled (dead-lettered) and must not be
    /// reported as a failure.
    async fn settle_failure(&self, record: &SqsMessage, error: &RecordError) -> bool {
        match error {
            RecordError::Malformed(reason) => {
                tracing::warn!(message_id = record.id(), %reason, "malformed record, dead-lettering");
                match self.queue.dead_letter(record.text(), record.id(), reason).await {
                    Ok(()) => return true,
                    Err(e) => tracing::warn!(message_id = record.id(), %e, "dead-lettering failed; retrying"),
                }
                self.delay(record, self.retry_delay(record)).await;
            }
            RecordError::InFlight { event_id, lease_until } => {
                let wait = (*lease_until - Utc::now()).to_std().unwrap_or_default();
                tracing::info!(%event_id, ?wait, "event in flight elsewhere; retrying after its lease");
                self.delay(record, wait + self.retry_delay(record)).await;
            }
            RecordError::Transient(e) => {
                tracing::warn!(message_id = record.id(), error = %e, "transient failure; retrying");
                self.delay(record, self.retry_delay(record)).await;
            }
        }
        false
    }

    fn retry_delay(&self, record: &SqsMessage) -> Duration {
        self.config.retry.redelivery(record.receive_count().saturating_sub(1), &mut rand::rng())
    }

    async fn delay(&self, record: &SqsMessage, delay: Duration) {
        if let Err(e) = self.queue.delay_redelivery(record.receipt(), delay).await {
            // The queue's own visibility timeout still applies.
            tracing::warn!(message_id = record.id(), %e, "could not set the retry delay");
        }
    }
}

fn describe(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Emitted { kind, control_jobs } => {
            json!({"outcome": "emitted", "kind": kind, "control_jobs": control_jobs})
        }
        Outcome::Ignored { reason } => json!({"outcome": "ignored", "reason": reason}),
        Outcome::Duplicate { kind } => json!({"outcome": "duplicate", "kind": kind}),
    }
}

/// One count per event outcome, so that every record shows up in exactly one of them.
fn count(metrics: &mut Metrics, outcome: &Result<Outcome, RecordError>) {
    match outcome {
        Ok(Outcome::Emitted { kind, control_jobs }) => {
            metrics.count(kind, 1);
            metrics.count("control_jobs", *control_jobs as u64);
        }
        Ok(Outcome::Ignored { reason }) => {
            metrics.count("ignored", 1);
            if *reason == IgnoreReason::UnsupportedEvent {
                metrics.count("unknown_events", 1);
            }
        }
        Ok(Outcome::Duplicate { .. }) => metrics.count("duplicates", 1),
        Err(RecordError::Malformed(_)) => metrics.count("malformed", 1),
        Err(RecordError::InFlight { .. }) => metrics.count("in_flight_elsewhere", 1),
        Err(RecordError::Transient(_)) => metrics.count("transient_failures", 1),
    }
}

/// Unique per claim attempt, so that a release or completion never touches another invocation's claim.
fn owner_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}-{}", std::process::id(), Utc::now().timestamp_micros(), NEXT.fetch_add(1, Ordering::Relaxed))
}
