//! Error answers as each AWS protocol writes them, so that the SDK parses an injected fault into the same typed
//! error a real one would produce.

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::StatusCode;

use super::request::Protocol;

/// An AWS error answer: HTTP status, error code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into() }
    }

    /// EC2's shortage answer, word for word; a server-side (500) error.
    pub fn insufficient_instance_capacity(instance_type: &str, zone: &str, alternatives: &[&str]) -> Self {
        let mut message = format!(
            "We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested \
             ({zone}). Our system will be working on provisioning additional capacity."
        );
        if !alternatives.is_empty() {
            message.push_str(&format!(
                " You can currently get {instance_type} capacity by not specifying an Availability Zone in your \
                 request or choosing {}.",
                alternatives.join(", ")
            ));
        }
        Self::new(500, "InsufficientInstanceCapacity", message)
    }

    /// The spot variant of the shortage answer.
    pub fn no_spot_capacity() -> Self {
        Self::new(500, "InsufficientInstanceCapacity", "There is no Spot capacity available that matches your request.")
    }

    pub fn vcpu_limit_exceeded(limit: u32) -> Self {
        Self::new(
            400,
            "VcpuLimitExceeded",
            format!(
                "You have requested more vCPU capacity than your current vCPU limit of {limit} allows for the \
                 instance bucket that the specified instance type belongs to. Please visit \
                 http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
            ),
        )
    }

    pub fn max_spot_instance_count_exceeded() -> Self {
        Self::new(400, "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded")
    }

    /// EC2's API throttling answer.
    pub fn request_limit_exceeded() -> Self {
        Self::new(503, "RequestLimitExceeded", "Request limit exceeded.")
    }

    /// The throttling answer of the given service, with the code that service really uses.
    pub fn throttling(service: &str) -> Self {
        match service {
            "ec2" => Self::request_limit_exceeded(),
            "dynamodb" => Self::new(
                400,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. Consider increasing your \
                 provisioning level with the UpdateTable API.",
            ),
            "sqs" => Self::new(400, "RequestThrottled", "Rate exceeded"),
            "s3" => Self::new(503, "SlowDown", "Please reduce your request rate."),
            _ => Self::new(400, "ThrottlingException", "Rate exceeded"),
        }
    }

    pub fn internal_error() -> Self {
        Self::new(500, "InternalFailure", "We encountered an internal error. Please try again.")
    }

    pub fn service_unavailable() -> Self {
        Self::new(503, "ServiceUnavailable", "Service is unavailable. Please try again later.")
    }

    /// The answer as `protocol` writes it: status, headers and body.
    pub fn render(
        &self,
        protocol: Protocol,
        service: Option<&str>,
    ) -> (StatusCode, Vec<(&'static str, String)>, String) {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let request_id = request_id();
        let code = xml_escape(&self.code);
        let message = xml_escape(&self.message);
        let fault = if self.status >= 500 { "Receiver" } else { "Sender" };
        match protocol {
            Protocol::Ec2Query => (
                status,
                vec![("content-type", "text/xml;charset=UTF-8".into())],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
                     <Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
                ),
            ),
            Protocol::AwsQuery => (
                status,
                vec![("content-type", "text/xml".into())],
                format!(
                    "<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
                     <RequestId>{request_id}</RequestId></ErrorResponse>"
                ),
            ),
            Protocol::RestXml => (
                status,
                vec![("content-type", "application/xml".into())],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
                     <RequestId>{request_id}</RequestId></Error>"
                ),
            ),
            Protocol::AwsJson => {
                let mut headers = vec![
                    ("content-type", "application/x-amz-json-1.0".into()),
                    ("x-amzn-errortype", format!("{}:", self.code)),
                    ("x-amzn-requestid", request_id),
                ];
                // SQS speaks JSON but keeps its query-era codes; the SDK reads them from this header.
                if service == Some("sqs") {
                    headers.push(("x-amzn-query-error", format!("{};{fault}", self.code)));
                }
                let body = serde_json::json!({"__type": self.code, "message": self.message}).to_string();
                (status, headers, body)
            }
        }
    }
}

fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-fa17-4e1c-9d0e-{:012x}", std::process::id(), n)
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
