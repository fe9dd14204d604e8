//! The `on-signal` Lambda function: EventBridge capacity and interruption events in, control jobs out.
//!
//! The handler ([`handler::SignalHandler`]) is an ordinary async function over three narrow ports
//! ([`ports`]); [`aws`] implements them with DynamoDB and SQS. `main.rs` only wires them to the Lambda runtime.

pub mod aws;
pub mod handler;
pub mod ports;
pub mod settings;

use handler::SignalHandler;

/// The handler as deployed: DynamoDB dedup, SQS control and signals queues.
pub type DeployedHandler = SignalHandler<aws::DynamoDedupStore, gameforge_fleet::ControlQueue, aws::SqsSignalQueue>;

/// Builds the deployed handler from settings and an SDK configuration.
pub fn deployed_handler(settings: &settings::Settings, config: &aws_config::SdkConfig) -> DeployedHandler {
    let sqs = aws_sdk_sqs::Client::new(config);
    SignalHandler::new(
        settings.handler_config(),
        aws::DynamoDedupStore::new(
            aws_sdk_dynamodb::Client::new(config),
            &settings.dedup_table,
            settings.dedup_retention,
        ),
        gameforge_fleet::ControlQueue::new(sqs.clone(), &settings.control_queue_url),
        aws::SqsSignalQueue::new(sqs, &settings.signals_queue_url, &settings.signals_dead_letter_url),
    )
}
