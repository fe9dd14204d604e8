//! The Lambda function URL payload (format 2.0), only the parts this function reads, and its answer.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub raw_path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub is_base64_encoded: bool,
    pub request_context: RequestContext,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestContext {
    pub http: Http,
    #[serde(default)]
    pub authorizer: Option<Authorizer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Http {
    pub method: String,
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Authorizer {
    #[serde(default)]
    pub iam: Option<Iam>,
}

/// The signer, as AWS verified it (`AuthType: AWS_IAM`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Iam {
    #[serde(default)]
    pub user_arn: Option<String>,
}

impl Request {
    /// The ARN of the IAM principal that signed the request, as AWS verified it; `None` when the URL is not
    /// behind IAM auth.
    pub fn caller(&self) -> Option<&str> {
        let iam = self.request_context.authorizer.as_ref()?.iam.as_ref()?;
        iam.user_arn.as_deref().filter(|arn| !arn.is_empty())
    }

    pub fn method(&self) -> &str {
        &self.request_context.http.method
    }

    pub fn path(&self) -> &str {
        if self.raw_path.is_empty() { &self.request_context.http.path } else { &self.raw_path }
    }

    /// The body's bytes (decoded when the URL delivered it as base64).
    pub fn body_bytes(&self) -> Result<Vec<u8>, String> {
        let body = self.body.as_deref().unwrap_or_default();
        if self.is_base64_encoded {
            base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| format!("body is not valid base64: {e}"))
        } else {
            Ok(body.as_bytes().to_vec())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status_code: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn json(status_code: u16, body: &Value) -> Self {
        let headers = BTreeMap::from([("content-type".to_string(), "application/json".to_string())]);
        Self { status_code, headers, body: body.to_string() }
    }

    pub fn error(status_code: u16, message: impl Into<String>) -> Self {
        Self::json(status_code, &serde_json::json!({ "error": message.into() }))
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_string(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_by(arn: &str) -> Request {
        serde_json::from_value(serde_json::json!({
            "rawPath": "/jobs",
            "requestContext": {"http": {"method": "GET"}, "authorizer": {"iam": {"userArn": arn, "callerId": "AROA:x"}}}
        }))
        .unwrap()
    }

    #[test]
    fn the_caller_is_the_signers_arn() {
        let request = signed_by("arn:aws:sts::123456789012:assumed-role/game-backend/i-0abc");
        assert_eq!(request.caller(), Some("arn:aws:sts::123456789012:assumed-role/game-backend/i-0abc"));
    }

    #[test]
    fn base64_bodies_are_decoded_and_unsigned_requests_have_no_caller() {
        let request: Request = serde_json::from_value(serde_json::json!({
            "body": "eyJhIjoxfQ==", "isBase64Encoded": true,
            "requestContext": {"http": {"method": "POST", "path": "/jobs"}}
        }))
        .unwrap();
        assert_eq!(request.body_bytes().unwrap(), br#"{"a":1}"#);
        assert_eq!(request.caller(), None);
        assert_eq!(request.path(), "/jobs");
    }
}
