//! The service's edges on AWS: the job queue (SQS), images (S3), results and progress (the job's reply-to queue
//! and EventBridge). The job status store is `gameforge_jobs::DynamoJobStore`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use gameforge_aws::dead_letter::DeadLetter;
use gameforge_aws::sdk_error::describe;
use gameforge_contract::{JobResult, JobStatus, Message, S3Uri};
use gameforge_jobs::OWNER_ATTRIBUTE;
use gameforge_jobs::clients::{queue_region, sqs_for_queue};

use super::decide::Delivery;
use super::ports::{Announcement, Announcer, JobQueue, ObjectStore, PortError, Stored};

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
            .map_err(|e| PortError::sdk("GetQueueAttributes", &e))?;
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
                    .map_err(|e| PortError::sdk("GetQueueUrl", &e))?;
                found.queue_url().map(str::to_string)
            }
            None => None,
        };
        Ok((Self { client, url, dead_letter_url }, max_receives))
    }
}

/// SQS's longest long poll.
const LONGEST_WAIT: Duration = Duration::from_secs(20);

impl JobQueue for SqsJobQueue {
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, PortError> {
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .wait_time_seconds(wait.min(LONGEST_WAIT).as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(OWNER_ATTRIBUTE)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default()
                    .timeout_config(gameforge_aws::config::long_poll_timeouts(wait.min(LONGEST_WAIT))),
            )
            .send()
            .await
            .map_err(|e| PortError::sdk("ReceiveMessage", &e))?;
        let Some(message) = answer.messages().first() else { return Ok(None) };
        let receive_count = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let owner = message
            .message_attributes()
            .and_then(|a| a.get(OWNER_ATTRIBUTE))
            .and_then(|v| v.string_value())
            .map(str::to_string);
        Ok(Some(Delivery {
            message_id: message.message_id().unwrap_or_default().to_string(),
            receipt: message.receipt_handle().unwrap_or_default().to_string(),
            body: message.body().unwrap_or_default().to_string(),
            receive_count,
            owner,
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
            .map_err(|e| PortError::sdk("ChangeMessageVisibility", &e))?;
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<(), PortError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| PortError::sdk("DeleteMessage", &e))?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), PortError> {
        let Some(dlq) = &self.dead_letter_url else {
            // Without a DLQ the message is left to the queue's own retention rather than dropped.
            return Err(PortError::new("DeadLetter", "the job queue has no dead-letter queue"));
        };
        let mut attributes = vec![("receive_count", delivery.receive_count.to_string())];
        // A message moved back from the DLQ must still say whose job it is.
        if let Some(owner) = &delivery.owner {
            attributes.push((OWNER_ATTRIBUTE, owner.clone()));
        }
        let letter = DeadLetter {
            body: &delivery.body,
            source_message_id: &delivery.message_id,
            error_class: "unprocessable_job",
            reason,
            attributes,
        };
        letter.send(&self.client, dlq).await?;
        self.delete(&delivery.receipt).await
    }

    async fn send(&self, delivery: &Delivery) -> Result<(), PortError> {
        let mut send = self.client.send_message().queue_url(&self.url).message_body(&delivery.body);
        if let Some(owner) = &delivery.owner {
            let value = aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(owner)
                .build()
                .map_err(|e| PortError::new("SendMessage job", e))?;
            send = send.message_attributes(OWNER_ATTRIBUTE, value);
        }
        send.send().await.map_err(|e| PortError::sdk("SendMessage job", &e))?;
        Ok(())
    }
}

/// Images to S3, through a client of each bucket's own region: a standby region's worker writes to the home
/// region's bucket.
#[derive(Debug, Clone)]
pub struct S3Objects {
    buckets: gameforge_jobs::clients::BucketClients,
}

impl S3Objects {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self { buckets: gameforge_jobs::clients::BucketClients::new(config) }
    }
}

/// The object metadata naming the job an image belongs to (`x-amz-meta-gameforge-job`).
pub const IMAGE_JOB_METADATA: &str = "gameforge-job";

impl ObjectStore for S3Objects {
    /// A conditional write (`If-None-Match: *`); where something is there already, it is replaced only if its
    /// metadata names this very job, and then only as read (`If-Match` on its ETag).
    async fn put(
        &self,
        location: &S3Uri,
        bytes: Vec<u8>,
        content_type: &str,
        incarnation: &str,
    ) -> Result<Stored, PortError> {
        let bucket = location.bucket();
        let put = |condition: Result<String, &'static str>| {
            let bytes = bytes.clone();
            let condition = condition.clone();
            move |s3: aws_sdk_s3::Client| {
                let request = s3
                    .put_object()
                    .bucket(bucket)
                    .key(location.prefix())
                    .content_type(content_type)
                    .metadata(IMAGE_JOB_METADATA, incarnation)
                    .body(bytes.clone().into());
                let request = match condition.clone() {
                    Ok(etag) => request.if_match(etag),
                    Err(any) => request.if_none_match(any),
                };
                request.send()
            }
        };
        let failed = |e| PortError::sdk("PutObject", &e);
        match self.buckets.call(bucket, put(Err("*"))).await {
            Ok(_) => return Ok(Stored::Written),
            Err(e) if !precondition_failed(&e) => return Err(failed(e)),
            Err(_) => {}
        }
        let existing = self
            .buckets
            .call(bucket, |s3| async move { s3.head_object().bucket(bucket).key(location.prefix()).send().await })
            .await
            .map_err(|e| PortError::sdk("HeadObject", &e))?;
        let ours = existing.metadata().and_then(|m| m.get(IMAGE_JOB_METADATA)).is_some_and(|m| m == incarnation);
        let Some(etag) = existing.e_tag().filter(|_| ours) else { return Ok(Stored::Taken) };
        match self.buckets.call(bucket, put(Ok(etag.to_owned()))).await {
            Ok(_) => Ok(Stored::Written),
            // Replaced between the read and this write: by whom is not known, so it is not ours to overwrite.
            Err(e) if precondition_failed(&e) => Ok(Stored::Taken),
            Err(e) => Err(failed(e)),
        }
    }
}

fn precondition_failed<E: aws_sdk_s3::error::ProvideErrorMetadata>(error: &aws_sdk_s3::error::SdkError<E>) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("PreconditionFailed")
        || error.raw_response().is_some_and(|r| r.status().as_u16() == 412)
}

/// SQS answers that say the queue will never take the message: it is gone, or not ours to send to.
fn refused_for_good(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "AWS.SimpleQueueService.NonExistentQueue"
                | "QueueDoesNotExist"
                | "AccessDenied"
                | "AccessDeniedException"
                | "InvalidAddress"
                | "InvalidSecurity"
                | "KmsAccessDenied"
                | "KmsDisabled"
                | "KmsNotFound"
        )
    )
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
            .map_err(|e| PortError::sdk("PutEvents", &e))?;
        if sent.failed_entry_count() > 0 {
            return Err(PortError::new("PutEvents", "the event was refused"));
        }
        Ok(())
    }
}

impl Announcer for AwsAnnouncer {
    async fn reply(&self, result: &JobResult, reply_to: Option<&str>) -> Result<Announcement, PortError> {
        let Some(url) = reply_to else { return Ok(Announcement::Delivered) };
        let sent = self.client_for(url).send_message().queue_url(url).message_body(result.to_json()).send().await;
        match sent {
            Ok(_) => Ok(Announcement::Delivered),
            Err(e) if refused_for_good(e.as_service_error().and_then(|s| s.code())) => Ok(Announcement::ReplyRefused(
                format!("the reply queue {url} refuses the result for good: {}", describe(&e)),
            )),
            Err(e) => Err(PortError::sdk("SendMessage", &e)),
        }
    }

    async fn result_event(&self, result: &JobResult) -> Result<(), PortError> {
        self.event(detail_type(result.status), result.to_json()).await
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

    #[test]
    fn a_missing_or_forbidden_reply_queue_refuses_for_good_and_throttling_does_not() {
        for code in ["AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "AccessDenied"] {
            assert!(refused_for_good(Some(code)), "{code}");
        }
        for code in ["ThrottlingException", "RequestThrottled", "InternalError", "ServiceUnavailable"] {
            assert!(!refused_for_good(Some(code)), "{code}");
        }
        assert!(!refused_for_good(None));
    }
}
