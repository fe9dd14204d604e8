//! A reply queue read as a stream of results, for backends that submit many jobs with one `reply_to` queue and
//! handle each answer as it comes, instead of waiting on jobs one by one.

use std::time::Duration;

use gameforge_aws::PortError;
use gameforge_contract::{ContractError, JobResult, Message};

use crate::clients::sqs_for_queue;

#[derive(Debug, Clone)]
pub struct ResultInbox {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

/// One message of the reply queue; acknowledge it once handled, or it comes back after the queue's visibility
/// timeout.
#[derive(Debug)]
pub struct Delivered {
    /// The result, or why the message is not one (a reply queue shared with something else).
    pub result: Result<JobResult, ContractError>,
    receipt: String,
}

impl ResultInbox {
    pub fn new(config: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        Self { client: sqs_for_queue(config, &queue_url), queue_url }
    }

    /// Up to ten results, waiting up to `wait` (at most 20 s) for the first.
    pub async fn receive(&self, wait: Duration) -> Result<Vec<Delivered>, PortError> {
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.min(Duration::from_secs(20)).as_secs() as i32)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default()
                    .timeout_config(gameforge_aws::config::long_poll_timeouts(wait.min(Duration::from_secs(20)))),
            )
            .send()
            .await
            .map_err(|e| PortError::sdk("ReceiveMessage results", &e))?;
        Ok(answer
            .messages()
            .iter()
            .map(|m| Delivered {
                result: JobResult::from_json(m.body().unwrap_or_default().as_bytes()),
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
            })
            .collect())
    }

    pub async fn ack(&self, delivered: &Delivered) -> Result<(), PortError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&delivered.receipt)
            .send()
            .await
            .map_err(|e| PortError::sdk("DeleteMessage result", &e))?;
        Ok(())
    }
}
