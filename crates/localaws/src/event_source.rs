//! An SQS event source for a [`LambdaHost`]: receives batches and hands them to the function in the shape and
//! with the semantics of a Lambda event source mapping with `ReportBatchItemFailures`: records the function
//! names as failed stay on the queue, the rest are deleted; a function error or an answer naming an unknown
//! record leaves the whole batch to reappear.

use std::collections::HashSet;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Map, Value, json};

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
        let records: Vec<Value> = messages.iter().map(|m| self.record(m)).collect();
        let mut stats = EventSourceStats { received: messages.len(), ..Default::default() };
        let ids: HashSet<&str> = messages.iter().filter_map(|m| m.message_id()).collect();
        let failed: Option<HashSet<String>> = match host
            .invoke(&json!({ "Records": records }), self.invoke_timeout)
            .await
        {
            Ok(invocation) => {
                let failures: Vec<String> = invocation.response["batchItemFailures"]
                    .as_array()
                    .map(|items| items.iter().filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                // Lambda treats an answer that names a record it did not send as a failure of the whole batch.
                if failures.iter().all(|id| ids.contains(id.as_str())) {
                    Some(failures.into_iter().collect())
                } else {
                    None
                }
            }
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

    fn record(&self, message: &Message) -> Value {
        let mut attributes = Map::new();
        for (name, value) in message.attributes().into_iter().flatten() {
            attributes.insert(name.as_str().to_owned(), json!(value));
        }
        let mut message_attributes = Map::new();
        for (name, value) in message.message_attributes().into_iter().flatten() {
            message_attributes.insert(
                name.clone(),
                json!({
                    "stringValue": value.string_value(),
                    "binaryValue": null,
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value.data_type(),
                }),
            );
        }
        json!({
            "messageId": message.message_id(),
            "receiptHandle": message.receipt_handle(),
            "body": message.body().unwrap_or_default(),
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": message.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        })
    }
}
