//! The job queue as demand, and the retry queue for delayed acquisition rounds.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use gameforge_contract::{ControlJob, Message};
use gameforge_planner::scaling::Demand;

use super::AwsWorld;
use gameforge_engine::ports::{Backlog, Backlogs, PortError, RetryQueue};

impl Backlog for AwsWorld {
    async fn demand(&self) -> Result<Backlogs, PortError> {
        let gpu_only = self.depth(&self.resources.job_queue_url).await?;
        let any_tier = match &self.resources.any_tier_queue_url {
            Some(url) => self.depth(url).await?,
            None => Demand::default(),
        };
        Ok(Backlogs { gpu_only, any_tier })
    }
}

impl AwsWorld {
    /// Jobs waiting and jobs being worked on (received, not yet deleted) in one queue.
    async fn depth(&self, url: &str) -> Result<Demand, PortError> {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| PortError::sdk("GetQueueAttributes", &e))?;
        let get = |name| attributes.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Demand {
            queued: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }
}

impl RetryQueue for AwsWorld {
    async fn schedule(&self, job: &ControlJob, delay: Duration) -> Result<(), PortError> {
        // SQS delays a message by at most 15 minutes; the retry policy's cap stays below that.
        let seconds = delay.as_secs().clamp(1, 900) as i32;
        self.sqs
            .send_message()
            .queue_url(&self.resources.retry_queue_url)
            .message_body(job.to_json())
            .delay_seconds(seconds)
            .send()
            .await
            .map_err(|e| PortError::sdk("schedule retry", &e))?;
        Ok(())
    }
}
