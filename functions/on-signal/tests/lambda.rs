//! The `on-signal` binary under a Lambda runtime API, fed the way AWS feeds it: EventBridge rules into the
//! signals queue, an SQS event source into the function, and files from `events/` as direct payloads (the
//! `cargo lambda invoke --data-file` path).

use std::path::{Path, PathBuf};
use std::time::Duration;

use gameforge_contract::{ControlJob, Message};
use gameforge_localaws::{Deployment, Emulator, LambdaHost, SqsEventSource};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_on-signal");

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("expected") {
            out.extend(event_files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    out
}

async fn start() -> (Emulator, aws_config::SdkConfig, Deployment, LambdaHost) {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gameforge").await.unwrap();
    let mut env = emulator.env();
    env.extend(deployment.on_signal_env("sdxl"));
    let host = LambdaHost::start(Path::new(BINARY), "on-signal", &env).unwrap();
    host.wait_ready(Duration::from_secs(30)).await.unwrap();
    (emulator, config, deployment, host)
}

async fn queue_depth(config: &aws_config::SdkConfig, url: &str) -> usize {
    let attributes = aws_sdk_sqs::Client::new(config)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let get =
        |name| attributes.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    use aws_sdk_sqs::types::QueueAttributeName as A;
    get(A::ApproximateNumberOfMessages) + get(A::ApproximateNumberOfMessagesNotVisible)
}

async fn receive_all(config: &aws_config::SdkConfig, url: &str) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut bodies = Vec::new();
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
            bodies.push(m.body().unwrap().to_owned());
        }
    }
}

#[tokio::test]
async fn events_published_to_eventbridge_flow_through_the_rules_and_the_function() {
    let (_emulator, config, deployment, host) = start().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let mut expected_jobs = 0;
    let mut routed = 0;
    for path in event_files(&events_dir()).into_iter().filter(|p| !p.starts_with(events_dir().join("sqs"))) {
        let event: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(event["source"].as_str().unwrap())
            .detail_type(event["detail-type"].as_str().unwrap())
            .detail(event["detail"].to_string())
            .set_resources(Some(
                event["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
            ))
            .build();
        let put = events.put_events().entries(entry).send().await.unwrap();
        assert_eq!(put.failed_entry_count(), 0, "{}", path.display());
        // What the rules let through is exactly what the classifier acts on, plus the stops ECS makes routinely.
        let signal = gameforge_signals::classify_json(&std::fs::read(&path).unwrap()).unwrap();
        let jobs = gameforge_signals::control_jobs(&signal, "sdxl", chrono::Utc::now()).len();
        if queue_depth(&config, &deployment.signals_queue_url).await > routed {
            routed += 1;
            expected_jobs += jobs;
        } else {
            assert_eq!(jobs, 0, "{} needs action but no rule routed it", path.display());
        }
    }
    assert!(routed >= 20, "only {routed} samples were routed");

    let source =
        SqsEventSource::new(&config, &deployment.signals_queue_url).await.unwrap().wait(Duration::from_millis(200));
    let stats = source.run_until(&host, |s| s.received >= routed).await.unwrap();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(queue_depth(&config, &deployment.signals_queue_url).await, 0);

    let jobs: Vec<ControlJob> = receive_all(&config, &deployment.control_queue_url)
        .await
        .iter()
        .map(|body| ControlJob::from_json(body.as_bytes()).unwrap())
        .collect();
    assert_eq!(jobs.len(), expected_jobs);

    // The function logged one classification per event, in JSON.
    let classified = host
        .logs_since(0)
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|log| log["message"] == "classified")
        .count();
    assert_eq!(classified, routed);
}

#[tokio::test]
async fn a_malformed_message_on_the_queue_ends_in_the_dead_letter_queue_and_the_rest_passes() {
    let (_emulator, config, deployment, host) = start().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    for body in [
        std::fs::read_to_string(events_dir().join("ec2/spot-interruption-warning-terminate.json")).unwrap(),
        "{\"id\": \"truncated".to_owned(),
        std::fs::read_to_string(events_dir().join("autoscaling/launch-unsuccessful-vcpu-quota.json")).unwrap(),
    ] {
        sqs.send_message().queue_url(&deployment.signals_queue_url).message_body(body).send().await.unwrap();
    }
    let source =
        SqsEventSource::new(&config, &deployment.signals_queue_url).await.unwrap().wait(Duration::from_millis(200));
    let stats = source.run_until(&host, |s| s.received >= 3).await.unwrap();
    assert_eq!((stats.deleted, stats.failed), (3, 0), "{stats:?}");
    assert_eq!(receive_all(&config, &deployment.signals_dead_letter_url).await, vec!["{\"id\": \"truncated"]);
    assert_eq!(receive_all(&config, &deployment.control_queue_url).await.len(), 2);
}

#[tokio::test]
async fn every_event_file_can_be_invoked_directly() {
    let (_emulator, _config, _deployment, host) = start().await;
    for path in event_files(&events_dir()) {
        let payload: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let invocation =
            host.invoke(&payload, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let answer = invocation.response;
        if path.starts_with(events_dir().join("sqs")) {
            assert_eq!(answer["batchItemFailures"], Value::Array(vec![]), "{}: {answer}", path.display());
        } else {
            let outcome = answer["outcome"].as_str().unwrap_or_default();
            assert!(["emitted", "ignored", "duplicate"].contains(&outcome), "{}: {answer}", path.display());
        }
    }
    let cold = host.cold_start().unwrap();
    println!("cold start (spawn to first /next): {cold:?}");
}
