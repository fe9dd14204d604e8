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
    #[serde(default)]
    pub caller_id: Option<String>,
}

impl Request {
    /// The IAM principal that signed the request; `None` when the URL is not behind IAM auth.
    pub fn caller(&self) -> Option<String> {
        let iam = self.request_context.authorizer.as_ref()?.iam.as_ref()?;
        iam.user_arn.clone().or_else(|| iam.caller_id.clone()).filter(|c| !c.is_empty())
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
