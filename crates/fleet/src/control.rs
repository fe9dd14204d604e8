//! The FIFO control queue, as the signal path and operators' tools send to it.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use gameforge_contract::{ControlJob, Message};
use gameforge_engine::ports::PortError;

/// The FIFO control queue: one message group per fleet, the control id as deduplication id.
#[derive(Debug, Clone)]
pub struct ControlQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl ControlQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    /// Sends in order, ten per call; the queue drops copies by control id.
    pub async fn send(&self, jobs: &[ControlJob]) -> Result<(), PortError> {
        for chunk in jobs.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(job.to_json())
                        .message_group_id(&job.fleet)
                        .message_deduplication_id(&job.control_id)
                        .build()
                        .map_err(|e| PortError::new("build control message", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| PortError::sdk("send control jobs", &e))?;
            // Entries that failed alone are sent again with the whole record; the queue drops the copies of
            // those that did arrive.
            if let Some(failed) = sent.failed().first() {
                return Err(PortError::new(
                    "send control jobs",
                    format!(
                        "{} of {} entries failed, first: {} {}",
                        sent.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }
}
