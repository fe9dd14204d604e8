//! An SQS event source for a [`LambdaHost`]: receives batches and hands them to the function in the shape and
//! with the semantics of a Lambda event source mapping with `ReportBatchItemFailures`: records the function
//! names as failed stay on the queue, the rest are deleted; a function error or an answer naming an unknown
//! record leaves the whole batch to reappear.

use std::collections::HashSet;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::encodings::Base64Data;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use gameforge_aws::sqs_batch::{SqsEvent, SqsMessage, SqsMessageAttribute, batch_outcome};

use crate::Error;
use crate::lambda_host::LambdaHost;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSourceStats {
    pub received: usize,
    pub deleted: usize,
    /// Records the function reported as failed, or all records of a failed invocation.
    pub failed: usize,
    pub invocation_errors: usize,
}

impl std::ops::AddAssign for EventSourceStats {
    fn add_assign(&mut self, other: Self) {
        self.received += other.received;
        self.deleted += other.deleted;
        self.failed += other.failed;
        self.invocation_errors += other.invocation_errors;
    }
}

#[derive(Debug, Clone)]
pub struct SqsEventSource {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    region: String,
    batch_size: i32,
    wait: Duration,
    invoke_timeout: Duration,
}

impl SqsEventSource {
    pub async fn new(config: &SdkConfig, queue_url: &str) -> Result<Self, Error> {
        let client = aws_sdk_sqs::Client::new(config);
        let attributes = client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                Error::Emulator(format!("queue {queue_url}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))
            })?;
        let queue_arn = attributes
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
        Ok(Self {
            client,
            queue_url: queue_url.to_owned(),
            queue_arn,
            region,
            batch_size: 10,
            wait: Duration::from_secs(1),
            invoke_timeout: Duration::from_secs(30),
        })
    }

    /// At most `n` records per invocation (1 to 10, as SQS receives them).
    pub fn batch_size(mut self, n: i32) -> Self {
        self.batch_size = n.clamp(1, 10);
        self
    }

    /// The function's timeout: each invocation's deadline.
    pub fn invoke_timeout(mut self, timeout: Duration) -> Self {
        self.invoke_timeout = timeout;
        self
    }

    /// Long-poll wait per receive.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// One receive and, if anything arrived, one invocation.
    pub async fn poll_once(&self, host: &LambdaHost) -> Result<EventSourceStats, Error> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(self.wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| Error::Emulator(format!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(e))))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(EventSourceStats::default());
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.record(m)).collect();
        let payload = serde_json::to_value(&event).map_err(|e| Error::Emulator(format!("SQS event: {e}")))?;
        let mut stats = EventSourceStats { received: messages.len(), ..Default::default() };
        let ids: HashSet<&str> = messages.iter().filter_map(|m| m.message_id()).collect();
        let failed: Option<HashSet<String>> = match host.invoke(&payload, self.invoke_timeout).await {
            Ok(invocation) => batch_outcome(&invocation.response, &ids),
            Err(error) => {
                tracing::warn!(%error, "invocation failed; the batch will reappear");
                stats.invocation_errors += 1;
                None
            }
        };
        let Some(failed) = failed else {
            stats.failed = messages.len();
            return Ok(stats);
        };
        stats.failed = failed.len();
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.message_id().is_some_and(|id| !failed.contains(id)))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            let deleted = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Error::Emulator(format!("delete: {}", aws_sdk_sqs::error::DisplayErrorContext(e))))?;
            stats.deleted = deleted.successful().len();
        }
        Ok(stats)
    }

    /// Polls until `done` says so, summing what happened.
    pub async fn run_until(
        &self,
        host: &LambdaHost,
        mut done: impl FnMut(&EventSourceStats) -> bool,
    ) -> Result<EventSourceStats, Error> {
        let mut total = EventSourceStats::default();
        while !done(&total) {
            total += self.poll_once(host).await?;
        }
        Ok(total)
    }

    /// The record as the event source mapping hands it over: system attributes and message attributes (binary
    /// values base64) as AWS documents them.
    fn record(&self, message: &Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id().map(str::to_owned);
        record.receipt_handle = message.receipt_handle().map(str::to_owned);
        record.body = Some(message.body().unwrap_or_default().to_owned());
        record.md5_of_body = message.md5_of_body().map(str::to_owned);
        record.md5_of_message_attributes = message.md5_of_message_attributes().map(str::to_owned);
        record.attributes = message
            .attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect();
        record.message_attributes = message
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(name, value)| {
                let mut attribute = SqsMessageAttribute::default();
                attribute.data_type = Some(value.data_type().to_owned());
                attribute.string_value = value.string_value().map(str::to_owned);
                attribute.binary_value = value.binary_value().map(|b| base64_data(b.as_ref()));
                attribute.string_list_values = value.string_list_values().to_vec();
                attribute.binary_list_values =
                    value.binary_list_values().iter().map(|b| base64_data(b.as_ref())).collect();
                (name.clone(), attribute)
            })
            .collect();
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = Some(self.region.clone());
        record
    }
}

/// The published type keeps its constructor to itself.
fn base64_data(bytes: &[u8]) -> Base64Data {
    let mut data = Base64Data::default();
    data.extend_from_slice(bytes);
    data
}
