//! The `on-signal` binary under a Lambda runtime API, fed the way AWS feeds it: EventBridge rules into the
//! signals queue, an SQS event source into the function, and files from `events/` as direct payloads (the
//! `cargo lambda invoke --data-file` path).

use std::path::Path;
use std::time::Duration;

use gameforge_contract::{ControlCommand, ControlJob, Message};
use gameforge_localaws::{Deployment, Emulator, LambdaHost, SqsEventSource, drain_queue, queue_depth, tools};
use serde_json::Value;
use support::sample;

mod support;

const BINARY: &str = env!("CARGO_BIN_EXE_on-signal");

/// The emulator, the account's own access, the deployment, the function running with its role, and an event
/// source that polls with that role (as Lambda does).
async fn start() -> (Emulator, aws_config::SdkConfig, Deployment, LambdaHost, SqsEventSource) {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gameforge").await.unwrap();
    let role = emulator.assume_role(&deployment.role_name("on-signal"), "on-signal").await.unwrap();
    let mut env = emulator.env_as(&role);
    env.extend(deployment.function_env(&config, "on-signal").await.unwrap());
    let host = LambdaHost::start(Path::new(BINARY), "on-signal", &env).unwrap();
    host.wait_ready(Duration::from_secs(30)).await.unwrap();
    let source = SqsEventSource::new(&emulator.sdk_config_as(&role, "us-east-1").await, &deployment.signals_queue_url)
        .await
        .unwrap()
        .wait(Duration::from_millis(200));
    (emulator, config, deployment, host, source)
}

#[tokio::test]
async fn events_published_to_eventbridge_flow_through_the_rules_and_the_function() {
    let (_emulator, config, deployment, host, source) = start().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let mut expected_jobs = 0;
    let mut routed = 0;
    for path in tools::event_samples() {
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
        if queue_depth(&config, &deployment.signals_queue_url).await.unwrap() > routed {
            routed += 1;
            expected_jobs += jobs;
        } else {
            assert_eq!(jobs, 0, "{} needs action but no rule routed it", path.display());
        }
    }
    assert!(routed >= 20, "only {routed} samples were routed");

    let stats = source.run_until(&host, |s| s.received >= routed).await.unwrap();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(queue_depth(&config, &deployment.signals_queue_url).await.unwrap(), 0);

    let jobs: Vec<ControlJob> = drain_queue(&config, &deployment.control_queue_url)
        .await
        .unwrap()
        .iter()
        .map(|m| ControlJob::from_json(m.body().unwrap().as_bytes()).unwrap())
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
    let (_emulator, config, deployment, host, source) = start().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    for body in [
        sample("ec2/spot-interruption-warning-terminate.json"),
        "{\"id\": \"truncated".to_owned(),
        sample("autoscaling/launch-unsuccessful-vcpu-quota.json"),
    ] {
        sqs.send_message().queue_url(&deployment.signals_queue_url).message_body(body).send().await.unwrap();
    }
    let stats = source.run_until(&host, |s| s.received >= 3).await.unwrap();
    assert_eq!((stats.deleted, stats.failed), (3, 0), "{stats:?}");
    let dead = drain_queue(&config, &deployment.signals_dead_letter_url).await.unwrap();
    assert_eq!(dead.iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), vec!["{\"id\": \"truncated"]);
    assert_eq!(drain_queue(&config, &deployment.control_queue_url).await.unwrap().len(), 2);
}

#[tokio::test]
async fn every_event_file_can_be_invoked_directly() {
    let (_emulator, _config, _deployment, host, _source) = start().await;
    for path in tools::event_samples().into_iter().chain(tools::event_batches()) {
        let payload: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let invocation =
            host.invoke(&payload, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let answer = invocation.response;
        if tools::event_batches().contains(&path) {
            assert_eq!(answer["batchItemFailures"], Value::Array(vec![]), "{}: {answer}", path.display());
        } else {
            let outcome = answer["outcome"].as_str().unwrap_or_default();
            assert!(["emitted", "ignored", "duplicate"].contains(&outcome), "{}: {answer}", path.display());
        }
    }
    let cold = host.cold_start().unwrap();
    println!("cold start (spawn to first /next): {cold:?}");
}

#[tokio::test]
async fn every_line_of_an_invocation_carries_its_request_id_trace_id_and_cold_start() {
    let (_emulator, _config, _deployment, host, _source) = start().await;
    let read = |path: &str| -> Value {
        serde_json::from_slice(&std::fs::read(tools::repo_root().join(path)).unwrap()).unwrap()
    };
    let first = host
        .invoke(&read("events/ec2/spot-interruption-warning-terminate.json"), Duration::from_secs(30))
        .await
        .unwrap();
    let second = host.invoke(&read("events/ec2/rebalance-recommendation.json"), Duration::from_secs(30)).await.unwrap();
    // The function's stdout is read as it comes; its lines may trail its answer by a moment.
    let lines_of = |request_id: &str| -> Vec<Value> {
        host.logs_since(0)
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|log| log["span"]["function_request_id"] == request_id)
            .collect()
    };
    for _ in 0..50 {
        if !lines_of(&second.request_id).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (invocation, cold) in [(&first, true), (&second, false)] {
        let lines = lines_of(&invocation.request_id);
        assert!(lines.iter().any(|log| log["message"] == "classified"), "{lines:?}");
        for log in &lines {
            assert_eq!(log["span"]["cold_start"], cold, "{log}");
            assert_eq!(log["span"]["service"], "on-signal", "{log}");
            let trace = log["span"]["xray_trace_id"].as_str().unwrap_or_default();
            assert!(trace.starts_with("Root=1-") && trace.ends_with(&invocation.request_id), "{log}");
        }
    }
}

#[tokio::test]
async fn a_spot_warning_with_a_blank_time_still_becomes_a_control_job() {
    let (_emulator, config, deployment, host, _source) = start().await;
    let path = tools::repo_root().join("events/ec2/spot-interruption-warning-blank-time.json");
    let payload: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(payload["time"], "", "the sample is the degraded event");
    let answer = host.invoke(&payload, Duration::from_secs(30)).await.unwrap().response;
    assert_eq!(answer["outcome"], "emitted", "{answer}");
    let jobs = drain_queue(&config, &deployment.control_queue_url).await.unwrap();
    let job = ControlJob::from_json(jobs[0].body().unwrap().as_bytes()).unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(matches!(job.command, ControlCommand::HandleInterruption { .. }), "{job:?}");
}
