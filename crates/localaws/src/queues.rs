//! Queue chores shared by the tests, the benchmarks and the local run.

use aws_config::SdkConfig;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

use crate::Error;

fn failed(operation: &str, e: impl std::fmt::Debug) -> Error {
    Error::Emulator(format!("{operation}: {e:?}"))
}

/// Messages on the queue: visible, in flight and delayed.
pub async fn queue_depth(config: &SdkConfig, url: &str) -> Result<usize, Error> {
    let attributes = aws_sdk_sqs::Client::new(config)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| failed("GetQueueAttributes", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let get =
        |name| attributes.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    Ok(get(QueueAttributeName::ApproximateNumberOfMessages)
        + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        + get(QueueAttributeName::ApproximateNumberOfMessagesDelayed))
}

/// Receives and deletes every visible message, with its system and message attributes, as a consumer would.
pub async fn drain_queue(config: &SdkConfig, url: &str) -> Result<Vec<Message>, Error> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut all = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| failed("ReceiveMessage", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(all);
        }
        for message in &messages {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| failed("DeleteMessage", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        }
        all.extend(messages);
    }
}
