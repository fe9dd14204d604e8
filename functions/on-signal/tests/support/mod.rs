//! What the on-signal tests share: samples from `events/` and SQS batches built around them.

#![allow(dead_code)]

use serde_json::{Value, json};

pub fn sample(path: &str) -> String {
    let path = gameforge_localaws::tools::repo_root().join("events").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An SQS batch as the Lambda event source delivers it, one record per body (`m0`, `m1`… with receipt handles
/// `r0`, `r1`…).
pub fn batch(bodies: &[String]) -> Value {
    json!({"Records": bodies.iter().enumerate().map(|(i, body)| json!({
        "messageId": format!("m{i}"), "receiptHandle": format!("r{i}"), "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gameforge-signals",
        "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
}
