//! The job queue's sending edge.

use std::future::Future;

use aws_sdk_sqs::types::MessageAttributeValue;
use gameforge_aws::PortError;
use gameforge_contract::{GenerationJob, Message};

use crate::{OWNER_ATTRIBUTE, Owner};

pub trait JobSender: Send + Sync + 'static {
    fn send(&self, job: &GenerationJob, owner: &Owner) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Sends jobs to the SQS job queue, the job id also as a message attribute so that queue tooling can find a job
/// without parsing bodies, and the owner as another, which tells the worker whose job it is.
#[derive(Debug, Clone)]
pub struct SqsJobSender {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobSender {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

impl JobSender for SqsJobSender {
    async fn send(&self, job: &GenerationJob, owner: &Owner) -> Result<(), PortError> {
        let text = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PortError::new("SendMessage job", e))
        };
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(job.to_json())
            .message_attributes("job_id", text(&job.job_id)?)
            .message_attributes(OWNER_ATTRIBUTE, text(owner.as_str())?)
            .send()
            .await
            .map_err(|e| PortError::sdk("SendMessage job", &e))?;
        Ok(())
    }
}
