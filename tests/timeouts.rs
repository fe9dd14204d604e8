//! The timeout budget of what is deployed: `infra/gameforge.yaml` as the emulator deploys it, read back, with
//! the binaries' own defaults where the template sets nothing. The emulator enforces no timeout, so these
//! relations are checked here or nowhere:
//! - every AWS call a function makes, retries included, ends before the function's timeout;
//! - a queue that feeds a function hides a message for at least six of the function's timeouts (AWS's advice,
//!   so that a batch still running is not delivered again);
//! - a message that keeps failing because AWS does survives at least ten minutes of outage before its queue's
//!   `maxReceiveCount` dead-letters it, with the backoff its consumer applies by receive count;
//! - the worker's long poll (its deployed default wait) never outlives its SDK attempt.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use gameforge_aws::backoff::Backoff;
use gameforge_aws::config::AwsSettings;
use gameforge_localaws::{Deployment, Emulator};

/// The outage a queued message must ride out.
const OUTAGE: Duration = Duration::from_secs(600);

/// The backoff each function's handler hides a transiently failed message with, by receive count.
fn consumer_backoff(function: &str) -> Backoff {
    match function {
        "gf-on-signal" => on_signal::handler::HandlerConfig::default().retry,
        "gf-executor" => executor::handler::TRANSIENT_REDELIVERY,
        other => panic!("no consumer backoff known for {other}"),
    }
}

async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> std::collections::HashMap<QueueAttributeName, String> {
    let answer = sqs.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::All).send().await;
    answer.unwrap().attributes().cloned().unwrap()
}

#[tokio::test]
async fn every_deployed_function_and_queue_keeps_the_timeout_budget() {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let _deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let lambda = aws_sdk_lambda::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);

    for function in ["gf-on-signal", "gf-executor", "gf-submit"] {
        let deployed = lambda.get_function_configuration().function_name(function).send().await.unwrap();
        let timeout = Duration::from_secs(deployed.timeout().unwrap() as u64);
        let env: BTreeMap<String, String> =
            deployed.environment().and_then(|e| e.variables()).cloned().unwrap_or_default().into_iter().collect();
        let settings = AwsSettings::from_lookup(|name| env.get(name).cloned());
        assert!(
            settings.operation_timeout < timeout,
            "{function}: an AWS call may take {:?} in a function stopped after {timeout:?}",
            settings.operation_timeout
        );
        assert!(settings.attempt_timeout <= settings.operation_timeout, "{function}: {settings:?}");
    }

    let mappings = lambda.list_event_source_mappings().send().await.unwrap();
    assert_eq!(mappings.event_source_mappings().len(), 3);
    for mapping in mappings.event_source_mappings() {
        let queue = mapping.event_source_arn().unwrap().rsplit(':').next().unwrap().to_owned();
        let function = mapping.function_arn().unwrap().rsplit(':').next().unwrap().to_owned();
        let timeout = lambda.get_function_configuration().function_name(&function).send().await.unwrap().timeout();
        let url = sqs.get_queue_url().queue_name(&queue).send().await.unwrap().queue_url.unwrap();
        let attributes = queue_attributes(&sqs, &url).await;
        let visibility: i32 = attributes[&QueueAttributeName::VisibilityTimeout].parse().unwrap();
        assert!(visibility >= 6 * timeout.unwrap(), "{queue}: visibility {visibility} s for a {timeout:?} s function");
        let redrive: serde_json::Value = serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
        let max_receives = redrive["maxReceiveCount"].as_u64().unwrap() as u32;
        let survives = consumer_backoff(&function).least_time_to(max_receives);
        assert!(
            survives >= OUTAGE,
            "{queue}: {max_receives} deliveries backed off by {function} last only {survives:?} of an outage"
        );
    }
}

#[tokio::test]
async fn the_worker_long_polls_within_its_attempts_and_rides_out_an_outage_on_the_job_queue() {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let worker_env: BTreeMap<String, String> = deployment.worker_env(&config).await.unwrap().into_iter().collect();
    let service = sdxl_worker::serve::runner::ServiceConfig::default();
    // The task definition leaves the wait to the worker's default, and the SDK settings to the SDK's.
    assert!(!worker_env.contains_key("GAMEFORGE_RECEIVE_WAIT_SECONDS"), "{worker_env:?}");
    let long_poll = gameforge_aws::config::long_poll_timeouts(service.wait);
    let attempt = long_poll.operation_attempt_timeout().unwrap();
    assert!(attempt > service.wait, "a {:?} poll in {attempt:?} attempts would be abandoned", service.wait);

    let attributes = queue_attributes(&aws_sdk_sqs::Client::new(&config), &deployment.job_queue_url).await;
    let redrive: serde_json::Value = serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    let max_receives = redrive["maxReceiveCount"].as_u64().unwrap() as u32;
    let survives = service.retry.least_time_to(max_receives);
    assert!(survives >= OUTAGE, "a job handed back on AWS failures lasts only {survives:?} of an outage");
    // The worker renews a job's visibility while it runs; the queue's own only covers a worker that died.
    let visibility: u64 = attributes[&QueueAttributeName::VisibilityTimeout].parse().unwrap();
    assert!(Duration::from_secs(visibility) >= service.visibility, "{visibility} s");
}
