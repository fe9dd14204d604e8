//! The AWS adapters and the whole handler against the emulator, with the project's template deployed.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use gameforge_aws::invocation::Deadline;
use gameforge_aws::metrics::Metrics;
use gameforge_contract::{ControlJob, Message};
use gameforge_localaws::{Deployment, Emulator, Rule, drain_queue};
use on_signal::aws::DynamoDedupStore;
use on_signal::ports::{Claim, ControlSink, DedupStore, PortError};
use on_signal::settings::Settings;
use serde_json::json;
use support::{batch, sample};

mod support;

struct Setup {
    emulator: Emulator,
    /// The account's own access: what the test does as AWS.
    config: aws_config::SdkConfig,
    /// The function's role from the template, enforced: what the code under test acts with.
    role: aws_config::SdkConfig,
    deployment: Deployment,
    settings: Settings,
}

async fn setup() -> Setup {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gameforge").await.unwrap();
    let env = deployment.function_env(&config, "on-signal").await.unwrap();
    let settings = Settings::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap();
    let credentials = emulator.assume_role(&deployment.role_name("on-signal"), "on-signal").await.unwrap();
    let role = emulator.sdk_config_as(&credentials, "us-east-1").await;
    Setup { emulator, config, role, deployment, settings }
}

fn control_jobs(messages: &[aws_sdk_sqs::types::Message]) -> Vec<ControlJob> {
    messages.iter().map(|m| ControlJob::from_json(m.body().unwrap().as_bytes()).unwrap()).collect()
}

#[tokio::test]
async fn the_dynamodb_store_claims_each_event_once() {
    let setup = setup().await;
    let store = DynamoDedupStore::new(
        aws_sdk_dynamodb::Client::new(&setup.role),
        &setup.deployment.dedup_table,
        Duration::from_secs(3600),
    );
    let now = Utc::now();
    let lease = Duration::from_secs(30);
    assert_eq!(store.claim("e1", "a", now, lease).await.unwrap(), Claim::Claimed);
    assert!(matches!(store.claim("e1", "b", now, lease).await.unwrap(), Claim::InFlight { .. }));
    // A claim whose lease has lapsed (its holder died) can be taken over.
    let later = now + chrono::Duration::seconds(31);
    assert_eq!(store.claim("e1", "b", later, lease).await.unwrap(), Claim::Claimed);
    // The first holder's completion no longer counts; the new holder's does.
    store.complete("e1", "a", later, 1).await.unwrap();
    assert!(matches!(store.claim("e1", "c", later, lease).await.unwrap(), Claim::InFlight { .. }));
    store.complete("e1", "b", later, 1).await.unwrap();
    assert_eq!(store.claim("e1", "c", later, lease).await.unwrap(), Claim::AlreadyDone);
    // Past its retention the record is gone, whether or not DynamoDB's TTL sweep has run.
    let much_later = later + chrono::Duration::hours(2);
    assert_eq!(store.claim("e1", "d", much_later, lease).await.unwrap(), Claim::Claimed);

    // A released claim is free at once; a release by someone else is a no-op.
    assert_eq!(store.claim("e2", "a", now, lease).await.unwrap(), Claim::Claimed);
    store.release("e2", "intruder").await.unwrap();
    assert!(matches!(store.claim("e2", "b", now, lease).await.unwrap(), Claim::InFlight { .. }));
    store.release("e2", "a").await.unwrap();
    assert_eq!(store.claim("e2", "b", now, lease).await.unwrap(), Claim::Claimed);
}

#[tokio::test]
async fn every_sample_becomes_its_control_jobs_on_the_fifo_queue() {
    let setup = setup().await;
    let handler = on_signal::deployed_handler(&setup.settings, &setup.role);
    let events = [
        "autoscaling/launch-unsuccessful-insufficient-capacity.json",
        "cloudtrail/create-fleet-instant-errors.json",
        "ec2/spot-interruption-warning-terminate.json",
        "health/scheduled-change-instance-retirement.json",
        "ecs/task-running.json",
    ];
    let answer = handler.handle(batch(&events.map(sample))).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let messages = drain_queue(&setup.config, &setup.deployment.control_queue_url).await.unwrap();
    let jobs = control_jobs(&messages);
    assert_eq!(jobs.len(), 1 + 2 + 1 + 2);
    for (message, job) in messages.iter().zip(&jobs) {
        let attributes = message.attributes().unwrap();
        use aws_sdk_sqs::types::MessageSystemAttributeName as A;
        assert_eq!(attributes.get(&A::MessageGroupId).map(String::as_str), Some("sdxl"));
        assert_eq!(attributes.get(&A::MessageDeduplicationId), Some(&job.control_id));
    }
}

#[tokio::test]
async fn the_same_event_delivered_twice_concurrently_yields_one_set_of_jobs() {
    let setup = setup().await;
    let handler = on_signal::deployed_handler(&setup.settings, &setup.role);
    let event = sample("health/scheduled-change-instance-retirement.json");
    let (a, b) = tokio::join!(
        handler.handle(batch(std::slice::from_ref(&event))),
        handler.handle(batch(std::slice::from_ref(&event)))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Later, the copy that met the claim comes back.
    handler.handle(batch(&[event])).await.unwrap();
    let jobs = control_jobs(&drain_queue(&setup.config, &setup.deployment.control_queue_url).await.unwrap());
    assert_eq!(jobs.len(), 2, "two affected instances, once each ({a} / {b})");
}

/// A sink that counts every send, so that the FIFO queue's own deduplication cannot hide a second send.
#[derive(Default)]
struct CountingSink(std::sync::Mutex<Vec<ControlJob>>);

impl ControlSink for CountingSink {
    async fn send(&self, jobs: &[ControlJob]) -> Result<(), PortError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }
}

#[tokio::test]
async fn dynamodb_alone_stops_concurrent_duplicates() {
    let setup = setup().await;
    let handler = on_signal::handler::SignalHandler::new(
        setup.settings.handler_config(),
        DynamoDedupStore::new(
            aws_sdk_dynamodb::Client::new(&setup.role),
            &setup.settings.dedup_table,
            Duration::from_secs(3600),
        ),
        CountingSink::default(),
        on_signal::aws::SqsSignalQueue::new(
            aws_sdk_sqs::Client::new(&setup.role),
            &setup.settings.signals_queue_url,
            &setup.settings.signals_dead_letter_url,
        ),
    );
    let event = sample("ec2/spot-interruption-warning-terminate.json");
    let copies = (0..8).map(|_| handler.handle_event(&event));
    let outcomes = futures::future::join_all(copies).await;
    assert_eq!(handler.ports().1.0.lock().unwrap().len(), 1, "{outcomes:?}");
}

#[tokio::test]
async fn throttling_from_dynamodb_and_sqs_is_retried_with_backoff() {
    let setup = setup().await;
    let handler = on_signal::deployed_handler(&setup.settings, &setup.role);
    let faults = setup.emulator.faults();
    let dynamo = faults.add(Rule::for_service("dynamodb").action("PutItem").times(2).throttle());
    let sqs = faults.add(Rule::for_service("sqs").action("SendMessageBatch").times(2).throttle());
    let answer = handler.handle(batch(&[sample("ec2/rebalance-recommendation.json")])).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!((dynamo.hits(), sqs.hits()), (2, 2));
    assert_eq!(faults.count("dynamodb", "PutItem"), 3);
    assert_eq!(faults.count("sqs", "SendMessageBatch"), 3);
    assert_eq!(control_jobs(&drain_queue(&setup.config, &setup.deployment.control_queue_url).await.unwrap()).len(), 1);
}

/// A signal received from the queue as Lambda hands it over: `(message, payload)`.
async fn received_signal(setup: &Setup, file: &str) -> (aws_sdk_sqs::types::Message, serde_json::Value) {
    let sqs = aws_sdk_sqs::Client::new(&setup.config);
    sqs.send_message().queue_url(&setup.settings.signals_queue_url).message_body(sample(file)).send().await.unwrap();
    let received = sqs.receive_message().queue_url(&setup.settings.signals_queue_url).send().await.unwrap();
    let message = received.messages()[0].clone();
    let payload = json!({"Records": [{
        "messageId": message.message_id(), "receiptHandle": message.receipt_handle(), "body": message.body(),
        "attributes": {"ApproximateReceiveCount": "3"}, "messageAttributes": {}, "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gameforge-signals", "awsRegion": "us-east-1"
    }]});
    (message, payload)
}

#[tokio::test]
async fn an_sqs_outage_that_outlasts_the_retries_fails_the_record_and_hides_it_for_its_backoff() {
    let setup = setup().await;
    let (message, payload) = received_signal(&setup, "ec2/rebalance-recommendation.json").await;
    let attempts = Emulator::settings().max_attempts;
    let throttle =
        setup.emulator.faults().add(Rule::for_service("sqs").action("SendMessageBatch").times(attempts).throttle());
    let handler = on_signal::deployed_handler(&setup.settings, &setup.role);
    let mut metrics = Metrics::new("test");
    let answer = handler.handle_batch(serde_json::from_value(payload).unwrap(), Deadline::NONE, &mut metrics).await;
    assert_eq!(answer, gameforge_aws::sqs_batch::failures([message.message_id().unwrap()]));
    assert_eq!(throttle.hits(), attempts);
    assert_eq!(metrics.get("transient_failures"), Some(1.0));
    assert_eq!(setup.emulator.faults().count("sqs", "ChangeMessageVisibility"), 1, "the retry is delayed");
    // The third receive waits at least half of its backoff ceiling (2 s doubled twice): not right away.
    let sqs = aws_sdk_sqs::Client::new(&setup.config);
    let again = sqs.receive_message().queue_url(&setup.settings.signals_queue_url).send().await.unwrap();
    assert!(again.messages().is_empty(), "hidden for its backoff");
    assert!(drain_queue(&setup.config, &setup.deployment.control_queue_url).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dynamodb_outage_does_not_hold_a_spot_warning_back() {
    let setup = setup().await;
    let (_, payload) = received_signal(&setup, "ec2/spot-interruption-warning-terminate.json").await;
    let outage = setup.emulator.faults().add(Rule::for_service("dynamodb").throttle());
    let handler = on_signal::deployed_handler(&setup.settings, &setup.role);
    let mut metrics = Metrics::new("test");
    let answer = handler.handle_batch(serde_json::from_value(payload).unwrap(), Deadline::NONE, &mut metrics).await;
    assert!(answer.batch_item_failures.is_empty());
    assert!(outage.hits() > 0);
    let jobs = control_jobs(&drain_queue(&setup.config, &setup.deployment.control_queue_url).await.unwrap());
    assert_eq!(jobs.len(), 1, "the replacement is asked for while DynamoDB is away");
}

#[tokio::test]
async fn a_malformed_record_reaches_the_dead_letter_queue_with_its_reason() {
    let setup = setup().await;
    let handler = on_signal::deployed_handler(&setup.settings, &setup.role);
    let answer = handler
        .handle(batch(&[sample("ec2/rebalance-recommendation.json"), "certainly not an event".into()]))
        .await
        .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let dead = drain_queue(&setup.config, &setup.settings.signals_dead_letter_url).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("certainly not an event"));
    let attributes = dead[0].message_attributes().unwrap();
    assert_eq!(attributes["error_class"].string_value(), Some("malformed_event"));
    assert!(attributes["error_reason"].string_value().unwrap().contains("not JSON"));
    assert_eq!(attributes["source_message_id"].string_value(), Some("m1"));
    let jobs: HashSet<_> =
        control_jobs(&drain_queue(&setup.config, &setup.deployment.control_queue_url).await.unwrap())
            .into_iter()
            .map(|j| j.control_id)
            .collect();
    assert_eq!(jobs.len(), 1, "the good record of the batch went through");
}
