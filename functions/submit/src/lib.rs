//! The submit function: the game backend's HTTP way in for backends that do not want the SQS SDK. A Lambda
//! function URL with IAM auth; jobs are validated and enqueued through `gameforge-jobs`, exactly as the client
//! library does it.

pub mod aws;
pub mod handler;
pub mod http;
pub mod openapi;
pub mod rate_limit;
pub mod settings;

use gameforge_jobs::clients::dynamodb_for_table;
use gameforge_jobs::{DynamoJobStore, FINAL_RETENTION_DAYS, SqsJobSender, SqsReplyQueues};

use crate::aws::DynamoRateLimiter;
use crate::handler::Handler;
use crate::settings::Settings;

pub type DeployedHandler = Handler<DynamoJobStore, SqsJobSender, SqsReplyQueues, DynamoRateLimiter>;

/// The handler wired to AWS as deployed.
pub fn deployed_handler(settings: &Settings, config: &aws_config::SdkConfig) -> DeployedHandler {
    let (jobs, table) = dynamodb_for_table(config, &settings.jobs_table);
    let (rates, rate_table) = dynamodb_for_table(config, &settings.rate_limit_table);
    Handler {
        store: DynamoJobStore::new(jobs, table, std::time::Duration::from_secs(FINAL_RETENTION_DAYS * 86_400)),
        queue: SqsJobSender::for_deployment(config, &settings.job_queue_url, settings.any_tier.as_ref()),
        replies: SqsReplyQueues::new(config, &settings.job_queue_url),
        limiter: DynamoRateLimiter::new(rates, rate_table, settings.bucket),
        config: settings.handler_config(),
    }
}
