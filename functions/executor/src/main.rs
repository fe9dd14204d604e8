use anyhow::Context;
use executor::aws::{AwsClock, AwsWorld};
use executor::handler::{ControlHandler, SqsDeadLetters};
use executor::settings::Settings;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gameforge_aws::telemetry::init_json();
    let settings = Settings::from_env().context("executor configuration")?;
    let config = gameforge_aws::config::load().await;
    let world = AwsWorld::new(config.clone(), settings.resources.clone(), AwsClock::System);
    let owner = format!(
        "{}-{}-{}",
        std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "executor".into()),
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let executor = executor::Executor::new(settings.fleet.clone(), world, owner);
    let dead_letters = SqsDeadLetters {
        client: aws_sdk_sqs::Client::new(&config),
        queue_url: settings.control_dead_letter_url.clone(),
    };
    let handler = ControlHandler::new(executor, dead_letters);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload).await.map_err(lambda_runtime::Error::from)
    }))
    .await
}
