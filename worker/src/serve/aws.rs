//! The service's edges on AWS: the job queue (SQS), images (S3), results and progress (the job's reply-to queue
//! and EventBridge). The job status store is `gameforge_jobs::DynamoJobStore`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use gameforge_contract::{JobResult, JobStatus, Message, S3Uri};
use gameforge_jobs::clients::{queue_region, sqs_for_queue};

use super::decide::Delivery;
use super::ports::{Announcer, JobQueue, ObjectStore, PortError};

pub const EVENT_SOURCE: &str = "gameforge.worker";

/// The detail-type of a job's final event.
pub fn detail_type(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Succeeded => "Generation Job Completed",
        JobStatus::Failed => "Generation Job Failed",
        JobStatus::Rejected => "Generation Job Rejected",
    }
}

pub const PROGRESS_DETAIL_TYPE: &str = "Generation Job Progress";

fn describe<E: std::error::Error + 'static>(e: &aws_sdk_sqs::error::SdkError<E>) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}

#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    dead_letter_url: Option<String>,
}

impl SqsJobQueue {
    /// The queue and, from its redrive policy, its dead-letter queue and `maxReceiveCount`.
    pub async fn connect(client: aws_sdk_sqs::Client, url: String) -> Result<(Self, Option<u32>), PortError> {
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| PortError::new("GetQueueAttributes", describe(&e)))?;
        let policy: Option<serde_json::Value> = attributes
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
            .and_then(|p| serde_json::from_str(p).ok());
        let max_receives = policy.as_ref().and_then(|p| {
            let v = &p["maxReceiveCount"];
            v.as_u64().or_else(|| v.as_str()?.parse().ok()).map(|n| n as u32)
        });
        let dead_letter_url = match policy.as_ref().and_then(|p| p["deadLetterTargetArn"].as_str()) {
            Some(arn) => {
                // arn:aws:sqs:<region>:<account>:<name>
                let parts: Vec<&str> = arn.split(':').collect();
                let (account, name) =
                    (parts.get(4).copied().unwrap_or_default(), parts.get(5).copied().unwrap_or_default());
                let found = client
                    .get_queue_url()
                    .queue_name(name)
                    .queue_owner_aws_account_id(account)
                    .send()
                    .await
                    .map_err(|e| PortError::new("GetQueueUrl", describe(&e)))?;
                found.queue_url().map(str::to_string)
            }
            None => None,
        };
        Ok((Self { client, url, dead_letter_url }, max_receives))
    }
}

impl JobQueue for SqsJobQueue {
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, PortError> {
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| PortError::new("ReceiveMessage", describe(&e)))?;
        let Some(message) = answer.messages().first() else { return Ok(None) };
        let receive_count = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        Ok(Some(Delivery {
            message_id: message.message_id().unwrap_or_default().to_string(),
            receipt: message.receipt_handle().unwrap_or_default().to_string(),
            body: message.body().unwrap_or_default().to_string(),
            receive_count,
        }))
    }

    async fn set_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), PortError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| PortError::new("ChangeMessageVisibility", describe(&e)))?;
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<(), PortError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| PortError::new("DeleteMessage", describe(&e)))?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), PortError> {
        let Some(dlq) = &self.dead_letter_url else {
            // Without a DLQ the message is left to the queue's own retention rather than dropped.
            return Err(PortError::new("DeadLetter", "the job queue has no dead-letter queue"));
        };
        let text = |v: &str| MessageAttributeValue::builder().data_type("String").string_value(v).build();
        let reason: String = reason.chars().take(1000).collect();
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(&delivery.body)
            .message_attributes("error_reason", text(&reason).map_err(|e| PortError::new("SendMessage", e))?)
            .message_attributes(
                "source_message_id",
                text(&delivery.message_id).map_err(|e| PortError::new("SendMessage", e))?,
            )
            .message_attributes(
                "receive_count",
                text(&delivery.receive_count.to_string()).map_err(|e| PortError::new("SendMessage", e))?,
            )
            .send()
            .await
            .map_err(|e| PortError::new("SendMessage", describe(&e)))?;
        self.delete(&delivery.receipt).await
    }
}

#[derive(Debug, Clone)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

impl ObjectStore for S3Objects {
    async fn put(&self, location: &S3Uri, bytes: Vec<u8>, content_type: &str) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(location.bucket())
            .key(location.prefix())
            .content_type(content_type)
            .body(bytes.into())
            .send()
            .await
            .map_err(|e| PortError::new("PutObject", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// Results to the job's reply-to queue (through a client of the queue's own region) and to EventBridge.
#[derive(Debug)]
pub struct AwsAnnouncer {
    config: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    regional: Mutex<HashMap<String, aws_sdk_sqs::Client>>,
    events: aws_sdk_eventbridge::Client,
    bus: String,
}

impl AwsAnnouncer {
    pub fn new(config: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        Self {
            config: config.clone(),
            sqs: aws_sdk_sqs::Client::new(config),
            regional: Mutex::new(HashMap::new()),
            events: aws_sdk_eventbridge::Client::new(config),
            bus: bus.into(),
        }
    }

    fn client_for(&self, queue_url: &str) -> aws_sdk_sqs::Client {
        let region = queue_region(queue_url);
        if region.is_none() || region.as_deref() == self.config.region().map(|r| r.as_ref()) {
            return self.sqs.clone();
        }
        let mut clients = self.regional.lock().expect("the client map lock is never poisoned");
        clients.entry(region.unwrap_or_default()).or_insert_with(|| sqs_for_queue(&self.config, queue_url)).clone()
    }

    async fn event(&self, detail_type: &str, detail: String) -> Result<(), PortError> {
        let sent = self
            .events
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .source(EVENT_SOURCE)
                    .detail_type(detail_type)
                    .detail(detail)
                    .event_bus_name(&self.bus)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| PortError::new("PutEvents", aws_sdk_eventbridge::error::DisplayErrorContext(e)))?;
        if sent.failed_entry_count() > 0 {
            return Err(PortError::new("PutEvents", "the event was refused"));
        }
        Ok(())
    }
}

impl Announcer for AwsAnnouncer {
    async fn result(&self, result: &JobResult, reply_to: Option<&str>) -> Result<(), PortError> {
        let body = result.to_json();
        if let Some(url) = reply_to {
            self.client_for(url)
                .send_message()
                .queue_url(url)
                .message_body(&body)
                .send()
                .await
                .map_err(|e| PortError::new("SendMessage", describe(&e)))?;
        }
        self.event(detail_type(result.status), body).await
    }

    async fn progress(&self, job_id: &str, step: usize, total: usize) -> Result<(), PortError> {
        let detail = serde_json::json!({"job_id": job_id, "step": step, "total": total}).to_string();
        self.event(PROGRESS_DETAIL_TYPE, detail).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_events_name_the_status() {
        assert_eq!(detail_type(JobStatus::Rejected), "Generation Job Rejected");
    }
}
