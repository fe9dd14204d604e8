//! The handler against in-memory ports: batch semantics, deduplication, failure isolation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gameforge_contract::ControlJob;
use on_signal::handler::{HandlerConfig, InvocationError, RecordError, SignalHandler};
use on_signal::ports::{Claim, ControlSink, DedupStore, PortError, SignalQueue};
use serde_json::{Value, json};
use support::{batch, sample};

mod support;

/// Owner, done, lease end.
type DedupRecord = (String, bool, DateTime<Utc>);

#[derive(Default)]
struct MemoryDedup {
    records: Mutex<HashMap<String, DedupRecord>>,
    fail: Mutex<bool>,
}

impl DedupStore for MemoryDedup {
    async fn claim(
        &self,
        event_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, PortError> {
        if *self.fail.lock().unwrap() {
            return Err(PortError::new("claim event", "throttled"));
        }
        // Yield so that concurrent claims really interleave.
        tokio::task::yield_now().await;
        let mut records = self.records.lock().unwrap();
        match records.get(event_id) {
            Some((_, true, _)) => Ok(Claim::AlreadyDone),
            Some((_, false, lease_until)) if *lease_until > now => Ok(Claim::InFlight { lease_until: *lease_until }),
            _ => {
                records
                    .insert(event_id.into(), (owner.into(), false, now + chrono::Duration::from_std(lease).unwrap()));
                Ok(Claim::Claimed)
            }
        }
    }

    async fn complete(&self, event_id: &str, owner: &str, _: DateTime<Utc>, _: usize) -> Result<(), PortError> {
        let mut records = self.records.lock().unwrap();
        if let Some(record) = records.get_mut(event_id).filter(|r| r.0 == owner) {
            record.1 = true;
        }
        Ok(())
    }

    async fn release(&self, event_id: &str, owner: &str) -> Result<(), PortError> {
        let mut records = self.records.lock().unwrap();
        if records.get(event_id).is_some_and(|r| r.0 == owner && !r.1) {
            records.remove(event_id);
        }
        Ok(())
    }
}

#[derive(Default)]
struct MemoryControl {
    sent: Mutex<Vec<ControlJob>>,
    fail_next: Mutex<u32>,
}

impl ControlSink for MemoryControl {
    async fn send(&self, jobs: &[ControlJob]) -> Result<(), PortError> {
        // A send takes time, during which a concurrent copy of the event meets the claim.
        tokio::task::yield_now().await;
        let mut fail = self.fail_next.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(PortError::new("send control jobs", "throttled"));
        }
        self.sent.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }
}

#[derive(Default)]
struct MemoryQueue {
    dead: Mutex<Vec<(String, String, String)>>,
    delays: Mutex<Vec<(String, Duration)>>,
}

impl SignalQueue for MemoryQueue {
    async fn dead_letter(&self, body: &str, message_id: &str, reason: &str) -> Result<(), PortError> {
        self.dead.lock().unwrap().push((body.into(), message_id.into(), reason.into()));
        Ok(())
    }

    async fn delay_redelivery(&self, receipt_handle: &str, delay: Duration) -> Result<(), PortError> {
        self.delays.lock().unwrap().push((receipt_handle.into(), delay));
        Ok(())
    }
}

type Handler = SignalHandler<MemoryDedup, MemoryControl, MemoryQueue>;

fn handler() -> Handler {
    SignalHandler::new(
        HandlerConfig::default(),
        MemoryDedup::default(),
        MemoryControl::default(),
        MemoryQueue::default(),
    )
}

fn failures(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_batch_yields_one_control_job_per_offering_and_instance() {
    let handler = handler();
    let answer = handler
        .handle(batch(&[
            sample("cloudtrail/create-fleet-instant-errors.json"),
            sample("health/scheduled-change-instance-retirement.json"),
            sample("ec2/state-change-running.json"),
            sample("other/s3-object-created.json"),
        ]))
        .await
        .unwrap();
    assert!(failures(&answer).is_empty(), "{answer}");
    let sent = handler_sent(&handler);
    // Two failed fleet overrides, two instances due for retirement; nothing for the ignored events.
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(sent.iter().all(|job| job.fleet == "sdxl"));
}

fn handler_sent(handler: &Handler) -> Vec<ControlJob> {
    // The ports are owned by the handler; reach them through a clone of what they recorded.
    handler_ports(handler).1.sent.lock().unwrap().clone()
}

fn handler_ports(handler: &Handler) -> (&MemoryDedup, &MemoryControl, &MemoryQueue) {
    handler.ports()
}

#[tokio::test]
async fn a_malformed_record_is_dead_lettered_alone_with_its_reason() {
    let handler = handler();
    let answer = handler
        .handle(batch(&[
            sample("ec2/spot-interruption-warning-stop.json"),
            "{\"detail-type\": \"EC2 Spot Instance Interruption Warning\"".into(),
            r#"{"id":"x","region":"us-east-1","detail":{}}"#.into(),
            sample("autoscaling/launch-unsuccessful-vcpu-quota.json"),
        ]))
        .await
        .unwrap();
    assert!(failures(&answer).is_empty(), "settled records are not failures: {answer}");
    let (_, control, queue) = handler_ports(&handler);
    assert_eq!(control.sent.lock().unwrap().len(), 2, "the good records are processed");
    let dead = queue.dead.lock().unwrap();
    assert_eq!(dead.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(), vec!["m1", "m2"]);
    assert!(dead[0].2.contains("not JSON"), "{}", dead[0].2);
    assert!(dead[1].2.contains("missing or empty `source`"), "{}", dead[1].2);
}

#[tokio::test]
async fn the_same_event_twice_in_one_batch_yields_its_jobs_once() {
    let handler = handler();
    let event = sample("ec2/spot-interruption-warning-terminate.json");
    let answer = handler.handle(batch(&[event.clone(), event.clone()])).await.unwrap();
    assert_eq!(handler_sent(&handler).len(), 1);
    // The copy met the original in flight: it is retried after the original's lease, not dropped.
    let failed = failures(&answer);
    assert_eq!(failed.len(), 1);
    let (_, _, queue) = handler_ports(&handler);
    let delays = queue.delays.lock().unwrap().clone();
    assert_eq!(delays.len(), 1);
    assert!(delays[0].1 >= Duration::from_secs(25), "waits out the lease: {:?}", delays[0].1);

    let again = handler.handle(batch(&[event])).await.unwrap();
    assert!(failures(&again).is_empty());
    assert_eq!(handler_sent(&handler).len(), 1, "the redelivered copy is a duplicate");
}

#[tokio::test]
async fn concurrent_invocations_with_the_same_event_yield_its_jobs_once() {
    let handler = handler();
    let event = sample("health/scheduled-change-instance-retirement.json");
    let (a, b) = tokio::join!(
        handler.handle(batch(std::slice::from_ref(&event))),
        handler.handle(batch(std::slice::from_ref(&event)))
    );
    let failed = failures(&a.unwrap()).len() + failures(&b.unwrap()).len();
    assert_eq!(failed, 1);
    assert_eq!(handler_sent(&handler).len(), 2, "two instances, once each");
}

#[tokio::test]
async fn a_failed_send_releases_the_claim_and_backs_off() {
    let handler = handler();
    *handler_ports(&handler).1.fail_next.lock().unwrap() = 1;
    let event = sample("ec2/rebalance-recommendation.json");
    let answer = handler.handle(batch(std::slice::from_ref(&event))).await.unwrap();
    assert_eq!(failures(&answer), vec!["m0"]);
    let (_, control, queue) = handler_ports(&handler);
    assert!(control.sent.lock().unwrap().is_empty());
    assert_eq!(queue.delays.lock().unwrap().len(), 1, "the retry is delayed with backoff");

    // The claim was released, so the retry need not wait for the lease.
    let answer = handler.handle(batch(&[event])).await.unwrap();
    assert!(failures(&answer).is_empty());
    assert_eq!(control.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dedup_store_outage_does_not_hold_a_signal_back() {
    let handler = handler();
    *handler_ports(&handler).0.fail.lock().unwrap() = true;
    let warning = sample("ec2/spot-interruption-warning-terminate.json");
    let answer = handler.handle(batch(&[warning.clone(), sample("ecs/task-running.json")])).await.unwrap();
    assert!(failures(&answer).is_empty(), "the warning is acted on unclaimed: {answer}");
    assert_eq!(handler_sent(&handler).len(), 1);
    // Once the store is back, the same event again is acted on again: repeats are harmless downstream (the
    // control id is the same), and nothing was marked done while the store was away.
    *handler_ports(&handler).0.fail.lock().unwrap() = false;
    handler.handle(batch(&[warning])).await.unwrap();
    let sent = handler_sent(&handler);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].control_id, sent[1].control_id);
}

#[tokio::test]
async fn a_direct_event_answers_with_its_outcome() {
    let handler = handler();
    let event: Value =
        serde_json::from_str(&sample("autoscaling/launch-unsuccessful-insufficient-capacity.json")).unwrap();
    let answer = handler.handle(event.clone()).await.unwrap();
    assert_eq!(answer, json!({"outcome": "emitted", "kind": "capacity_unavailable", "control_jobs": 1}));
    assert_eq!(handler.handle(event).await.unwrap()["outcome"], "duplicate");
    let ignored: Value = serde_json::from_str(&sample("other/s3-object-created.json")).unwrap();
    assert_eq!(handler.handle(ignored).await.unwrap(), json!({"outcome": "ignored", "reason": "unsupported_event"}));
}

#[tokio::test]
async fn a_direct_malformed_event_fails_the_invocation() {
    let error = handler().handle(json!({"hello": "world"})).await.unwrap_err();
    assert!(matches!(error, InvocationError::Record(RecordError::Malformed(_))), "{error}");
}

#[tokio::test]
async fn unknown_events_are_acknowledged_and_counted() {
    let handler = handler();
    let mut metrics = gameforge_aws::metrics::Metrics::new("test");
    let payload = batch(&[sample("other/s3-object-created.json"), sample("ecs/task-running.json")]);
    let response = handler
        .handle_batch(serde_json::from_value(payload).unwrap(), gameforge_aws::invocation::Deadline::NONE, &mut metrics)
        .await;
    assert!(response.batch_item_failures.is_empty(), "never retried");
    assert_eq!(metrics.get("unknown_events"), Some(1.0));
    assert_eq!(metrics.get("ignored"), Some(2.0));
    assert!(handler_sent(&handler).is_empty());
}
