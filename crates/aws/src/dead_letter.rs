//! Dead-lettering: a message that can never be processed goes to its dead-letter queue with the reason as
//! message attributes, so that an operator reads why without the logs and sends it back once the cause is fixed.

use aws_sdk_sqs::types::MessageAttributeValue;

use crate::PortError;

/// Reasons are cut here: an attribute is bounded only by the 256 KiB message, but a reason is for reading.
pub const REASON_LIMIT: usize = 1_024;
/// SQS refuses an empty body; the attributes still say what arrived.
pub const EMPTY_BODY: &str = "<empty>";

/// One message bound for a dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub body: &'a str,
    pub source_message_id: &'a str,
    /// What kind of input could not be processed (`malformed_event`, `malformed_control_job`, …).
    pub error_class: &'static str,
    pub reason: &'a str,
    /// What else the queue's readers need to send it back (the job's owner, the receive count).
    pub attributes: Vec<(&'static str, String)>,
}

impl DeadLetter<'_> {
    /// Sends the message to `queue_url`; on a FIFO queue the source message id is its deduplication id, so a
    /// retried dead-lettering leaves one copy.
    pub async fn send(&self, client: &aws_sdk_sqs::Client, queue_url: &str) -> Result<(), PortError> {
        let mut send = client.send_message().queue_url(queue_url).message_body(self.body());
        for (name, value) in self.message_attributes() {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PortError::new("dead-letter", e))?;
            send = send.message_attributes(name, value);
        }
        if queue_url.ends_with(".fifo") {
            send = send.message_group_id(self.error_class).message_deduplication_id(self.source_message_id);
        }
        send.send().await.map_err(|e| PortError::sdk("dead-letter", &e))?;
        Ok(())
    }

    fn body(&self) -> &str {
        if self.body.is_empty() { EMPTY_BODY } else { self.body }
    }

    fn message_attributes(&self) -> Vec<(&'static str, String)> {
        let mut attributes = vec![
            ("error_class", self.error_class.to_owned()),
            ("error_reason", self.reason.chars().take(REASON_LIMIT).collect()),
            ("source_message_id", self.source_message_id.to_owned()),
        ];
        attributes.extend(self.attributes.iter().cloned());
        // SQS refuses an empty attribute value.
        attributes.retain(|(_, value)| !value.is_empty());
        attributes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_cut_and_an_empty_body_named() {
        let reason = "é".repeat(5_000);
        let letter = DeadLetter {
            body: "",
            source_message_id: "m-1",
            error_class: "malformed_event",
            reason: &reason,
            attributes: vec![("receive_count", "3".into()), ("owner", String::new())],
        };
        assert_eq!(letter.body(), EMPTY_BODY);
        let attributes = letter.message_attributes();
        let names: Vec<_> = attributes.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["error_class", "error_reason", "source_message_id", "receive_count"]);
        assert_eq!(attributes[1].1.chars().count(), REASON_LIMIT);
    }
}
