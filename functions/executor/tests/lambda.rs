//! The `executor` binary under a Lambda runtime API, fed by the control queue as AWS feeds it.

use std::path::Path;
use std::time::Duration;

use executor::aws::DynamoLedger;
use gameforge_contract::Message;
use gameforge_engine::ports::LedgerStore;
use gameforge_localaws::{LambdaHost, SqsEventSource, drain_queue, with_env};
use support::rig;

mod support;

const BINARY: &str = env!("CARGO_BIN_EXE_executor");

async fn host(rig: &support::Rig) -> LambdaHost {
    // Inline, as the variable allows: each test's stamps have their own subnets.
    let fleet = serde_json::to_string(&rig.fleet).unwrap();
    let mut env = rig.emulator.env_as(&rig.executor_role);
    let deployed = rig.deployment.function_env(&rig.config, "executor").await.unwrap();
    env.extend(with_env(deployed, "GAMEFORGE_FLEET_CONFIG", &fleet));
    let host = LambdaHost::start(Path::new(BINARY), "executor", &env).unwrap();
    host.wait_ready(Duration::from_secs(30)).await.unwrap();
    host
}

async fn send(rig: &support::Rig, body: &str, dedup: &str) {
    aws_sdk_sqs::Client::new(&rig.config)
        .send_message()
        .queue_url(&rig.deployment.control_queue_url)
        .message_body(body)
        .message_group_id("sdxl")
        .message_deduplication_id(dedup)
        .send()
        .await
        .unwrap();
}

const SCHEDULED: &str = r#"{"version":"0","id":"5e1f3c9a-0000-4000-8000-000000000001","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-11-27T10:00:00Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/gameforge-reconcile"],"detail":{}}"#;

#[tokio::test]
async fn the_schedule_reconciles_and_a_malformed_job_goes_to_the_dead_letter_queue() {
    let rig = rig(&[("us-east-1", &["us-east-1a", "us-east-1b"], true)]).await;
    let host = host(&rig).await;
    rig.add_jobs(8).await;
    send(&rig, "{\"version\": 1, \"control_id\": \"x\"}", "bad").await;
    send(&rig, SCHEDULED, "tick").await;
    let source = SqsEventSource::new(&rig.executor_config, &rig.deployment.control_queue_url)
        .await
        .unwrap()
        .wait(Duration::from_millis(200));
    let stats = source.run_until(&host, |s| s.received >= 2).await.unwrap();
    assert_eq!((stats.deleted, stats.failed), (2, 0), "{stats:?}");
    assert_eq!(rig.instances("us-east-1").await.len(), 1, "the scheduled reconcile launched a worker");
    let dead = drain_queue(&rig.config, &rig.deployment.control_dead_letter_url).await.unwrap();
    assert_eq!(dead.len(), 1);
    let reason = dead[0].message_attributes().unwrap()["error_reason"].string_value().unwrap().to_owned();
    assert!(reason.contains("fleet") || reason.contains("command"), "{reason}");
    let decisions = host.logs_since(0).iter().filter(|l| l.contains("\"decision\"")).count();
    assert!(decisions > 0, "decisions are logged as JSON");
}

#[tokio::test]
async fn a_busy_fleet_fails_the_rest_of_the_batch_in_order() {
    let rig = rig(&[("us-east-1", &["us-east-1a"], true)]).await;
    let host = host(&rig).await;
    // Another executor holds the fleet.
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&rig.config), &rig.deployment.ledger_table);
    ledger.lock("sdxl", "someone-else", chrono::Utc::now(), Duration::from_secs(300)).await.unwrap();
    send(&rig, SCHEDULED, "tick-1").await;
    send(&rig, &SCHEDULED.replace("0001", "0002"), "tick-2").await;
    let source = SqsEventSource::new(&rig.executor_config, &rig.deployment.control_queue_url)
        .await
        .unwrap()
        .wait(Duration::from_millis(200));
    let stats = source.poll_once(&host).await.unwrap();
    assert_eq!((stats.received, stats.failed, stats.deleted), (2, 2, 0), "{stats:?}");
}

#[tokio::test]
async fn a_spot_warning_is_acted_on_within_seconds_while_another_invocation_holds_the_fleet() {
    let rig = rig(&[("us-east-1", &["us-east-1a", "us-east-1b"], true)]).await;
    let host = host(&rig).await;
    let source = SqsEventSource::new(&rig.executor_config, &rig.deployment.control_queue_url)
        .await
        .unwrap()
        .wait(Duration::from_millis(200))
        .invoke_timeout(Duration::from_secs(20));
    rig.add_jobs(8).await;
    send(&rig, SCHEDULED, "tick").await;
    source.run_until(&host, |s| s.deleted >= 1).await.unwrap();
    let victim = rig.instances("us-east-1").await.remove(0).0;

    // Another invocation is converging the fleet: it holds the lock for the few seconds that takes.
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&rig.config), &rig.deployment.ledger_table);
    ledger.lock("sdxl", "another-invocation", chrono::Utc::now(), Duration::from_secs(4)).await.unwrap();
    let job = rig.spot_warning(&victim, chrono::Utc::now());
    let warned = std::time::Instant::now();
    send(&rig, &job.to_json(), "spot-1").await;
    let stats = source.poll_once(&host).await.unwrap();
    let took = warned.elapsed();
    assert_eq!((stats.received, stats.deleted, stats.failed), (1, 1, 0), "handled on its first delivery: {stats:?}");
    let running: Vec<String> = rig.instances("us-east-1").await.into_iter().map(|i| i.0).collect();
    assert!(running.iter().any(|id| *id != victim), "a replacement was launched: {running:?}");
    assert!(took < Duration::from_secs(10), "the replacement was launched {took:?} after the warning");
}

#[tokio::test]
async fn a_job_that_cannot_wait_for_a_busy_fleet_comes_back_in_seconds() {
    let rig = rig(&[("us-east-1", &["us-east-1a"], true)]).await;
    let host = host(&rig).await;
    // An invocation was killed holding the fleet: its lock lasts until its own deadline would have passed.
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&rig.config), &rig.deployment.ledger_table);
    ledger.lock("sdxl", "killed-invocation", chrono::Utc::now(), Duration::from_secs(60)).await.unwrap();
    send(&rig, SCHEDULED, "tick").await;
    // An invocation with little time left does not wait, and hands the job back for a retry in seconds.
    let source = SqsEventSource::new(&rig.executor_config, &rig.deployment.control_queue_url)
        .await
        .unwrap()
        .wait(Duration::from_millis(200))
        .invoke_timeout(Duration::from_secs(9));
    let stats = source.poll_once(&host).await.unwrap();
    assert_eq!((stats.received, stats.failed), (1, 1), "{stats:?}");
    let sqs = aws_sdk_sqs::Client::new(&rig.config);
    let back = std::time::Instant::now();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&rig.deployment.control_queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if !got.messages().is_empty() {
            break;
        }
        // Not the queue's 120 s visibility timeout.
        assert!(back.elapsed() < Duration::from_secs(8), "still hidden after {:?}", back.elapsed());
    }
}
