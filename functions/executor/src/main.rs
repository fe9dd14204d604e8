// The instrumented invocation future nests the handler's futures deeper than the default limit allows.
#![recursion_limit = "256"]

use anyhow::Context;
use executor::aws::{AwsClock, AwsWorld};
use executor::handler::{ControlHandler, SqsControlQueues};
use executor::settings::Settings;
use gameforge_aws::sqs_batch::Payload;
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gameforge_aws::telemetry::init_json("executor");
    let settings = Settings::from_env().context("executor configuration")?;
    let config = gameforge_aws::config::load().await;
    let world = AwsWorld::new(config.clone(), settings.resources.clone(), AwsClock::System);
    let owner = format!(
        "{}-{}-{}",
        std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "executor".into()),
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let executor = gameforge_engine::Executor::new(settings.fleet.clone(), world, owner);
    let queues = SqsControlQueues {
        client: aws_sdk_sqs::Client::new(&config),
        queue_url: settings.control_dead_letter_url.clone(),
    };
    let handler = ControlHandler::new(executor, queues);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Payload>| {
        let span = gameforge_aws::telemetry::invocation_span(
            &event.context.request_id,
            event.context.xray_trace_id.as_deref(),
        );
        async move {
            let deadline = gameforge_aws::invocation::Deadline::from_epoch_millis(event.context.deadline);
            handler.handle_until(event.payload, deadline).await.map_err(lambda_runtime::Error::from)
        }
        .instrument(span)
    }))
    .await
}
