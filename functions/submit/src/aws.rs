//! The rate limiter's buckets in DynamoDB, one item per caller, each take one conditional write on the value
//! read, so that concurrent instances of the function never spend a token twice.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use gameforge_aws::PortError;
use gameforge_aws::sdk_error::lost_condition;

use crate::rate_limit::{Admission, BucketState, RateLimiter, TokenBucket};

/// Writers racing for one caller's bucket retry this many times before the request is limited.
const RACE_RETRIES: usize = 5;

#[derive(Debug, Clone)]
pub struct DynamoRateLimiter {
    client: aws_sdk_dynamodb::Client,
    table: String,
    bucket: TokenBucket,
}

impl DynamoRateLimiter {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, bucket: TokenBucket) -> Self {
        Self { client, table: table.into(), bucket }
    }
}

fn number(value: Option<&AttributeValue>) -> Option<f64> {
    value.and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

impl RateLimiter for DynamoRateLimiter {
    async fn admit(&self, caller: &str) -> Result<Admission, PortError> {
        for _ in 0..RACE_RETRIES {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("caller", AttributeValue::S(caller.to_string()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| PortError::sdk("GetItem rate", &e))?;
            let state = item.item().and_then(|i| {
                Some(BucketState { tokens: number(i.get("tokens"))?, at_ms: number(i.get("at_ms"))? as i64 })
            });
            let now_ms = chrono::Utc::now().timestamp_millis();
            let next = match self.bucket.take(state, now_ms) {
                Ok(next) => next,
                Err(retry_after) => return Ok(Admission::Limited { retry_after }),
            };
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("caller", AttributeValue::S(caller.to_string()))
                .item("tokens", AttributeValue::N(format!("{:.6}", next.tokens)))
                .item("at_ms", AttributeValue::N(next.at_ms.to_string()))
                // A full bucket needs no item: it expires once it would have refilled anyway.
                .item("expires_at", AttributeValue::N((now_ms / 1000 + 3600).to_string()));
            put = match state {
                Some(seen) => put
                    .condition_expression("at_ms = :seen")
                    .expression_attribute_values(":seen", AttributeValue::N(seen.at_ms.to_string())),
                None => put.condition_expression("attribute_not_exists(caller)"),
            };
            match put.send().await {
                Ok(_) => return Ok(Admission::Allowed),
                Err(e) if lost_condition(&e) => {
                    continue;
                }
                Err(e) => return Err(PortError::sdk("PutItem rate", &e)),
            }
        }
        Ok(Admission::Limited { retry_after: Duration::from_secs(1) })
    }
}
