//! The Lambda function URL request (payload format 2.0) and its answer, as AWS publishes them
//! (`aws_lambda_events`), with what this function reads from a request and how it writes an answer.

use aws_lambda_events::http::{HeaderName, HeaderValue};
pub use aws_lambda_events::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use base64::Engine;
use serde_json::Value;

/// What this function reads from a request.
pub trait RequestExt {
    /// The ARN of the IAM principal that signed the request, as AWS verified it; `None` when the URL is not
    /// behind IAM auth.
    fn caller(&self) -> Option<&str>;
    fn method(&self) -> &str;
    fn path(&self) -> &str;
    /// The body's bytes (decoded when the URL delivered it as base64).
    fn body_bytes(&self) -> Result<Vec<u8>, String>;
}

impl RequestExt for LambdaFunctionUrlRequest {
    fn caller(&self) -> Option<&str> {
        let iam = self.request_context.authorizer.as_ref()?.iam.as_ref()?;
        iam.user_arn.as_deref().filter(|arn| !arn.is_empty())
    }

    fn method(&self) -> &str {
        self.request_context.http.method.as_deref().unwrap_or_default()
    }

    fn path(&self) -> &str {
        match self.raw_path.as_deref() {
            Some(path) if !path.is_empty() => path,
            _ => self.request_context.http.path.as_deref().unwrap_or_default(),
        }
    }

    fn body_bytes(&self) -> Result<Vec<u8>, String> {
        let body = self.body.as_deref().unwrap_or_default();
        if self.is_base64_encoded {
            base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| format!("body is not valid base64: {e}"))
        } else {
            Ok(body.as_bytes().to_vec())
        }
    }
}

/// How this function answers: JSON bodies, errors as `{"error": …}`.
pub trait Answer: Sized {
    fn json(status_code: u16, body: &Value) -> Self;

    fn error(status_code: u16, message: impl Into<String>) -> Self {
        Self::json(status_code, &serde_json::json!({ "error": message.into() }))
    }

    /// The answer with one more header; a header HTTP cannot carry is left out rather than failing the answer.
    fn with_header(self, name: &'static str, value: &str) -> Self;
}

impl Answer for LambdaFunctionUrlResponse {
    fn json(status_code: u16, body: &Value) -> Self {
        let mut response = LambdaFunctionUrlResponse::default();
        response.status_code = i64::from(status_code);
        response.body = Some(body.to_string());
        response.with_header("content-type", "application/json")
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(HeaderName::from_static(name), value);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The request as AWS documents it for a URL with `AuthType: AWS_IAM`.
    #[test]
    fn reads_the_documented_request() {
        let request: LambdaFunctionUrlRequest = serde_json::from_value(json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/jobs/abc", "rawQueryString": "",
            "headers": {"content-type": "application/json", "host": "x.lambda-url.us-east-1.on.aws"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "x", "domainName": "x.lambda-url.us-east-1.on.aws",
                "domainPrefix": "x", "requestId": "id", "routeKey": "$default", "stage": "$default",
                "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390_i64,
                "authorizer": {"iam": {
                    "accessKey": "AKIA", "accountId": "123456789012", "callerId": "AROA:i-0abc",
                    "cognitoIdentity": null, "principalOrgId": null,
                    "userArn": "arn:aws:sts::123456789012:assumed-role/game-backend/i-0abc", "userId": "AROA:i-0abc"
                }},
                "http": {"method": "GET", "path": "/jobs/abc", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "agent"}
            },
            "isBase64Encoded": false
        }))
        .unwrap();
        assert_eq!(request.caller(), Some("arn:aws:sts::123456789012:assumed-role/game-backend/i-0abc"));
        assert_eq!((request.method(), request.path()), ("GET", "/jobs/abc"));
        assert_eq!(request.body_bytes().unwrap(), b"");
    }

    #[test]
    fn base64_bodies_are_decoded_and_unsigned_requests_have_no_caller() {
        let request: LambdaFunctionUrlRequest = serde_json::from_value(json!({
            "body": "eyJhIjoxfQ==", "isBase64Encoded": true,
            "requestContext": {"http": {"method": "POST", "path": "/jobs"}, "timeEpoch": 0}
        }))
        .unwrap();
        assert_eq!(request.body_bytes().unwrap(), br#"{"a":1}"#);
        assert_eq!(request.caller(), None);
        assert_eq!(request.path(), "/jobs");
    }

    #[test]
    fn answers_have_the_documented_shape_and_drop_headers_http_cannot_carry() {
        let answer = LambdaFunctionUrlResponse::error(503, "later").with_header("retry-after", "1");
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({
                "statusCode": 503, "headers": {"content-type": "application/json", "retry-after": "1"},
                "body": "{\"error\":\"later\"}", "isBase64Encoded": false, "cookies": []
            })
        );
        let answer = LambdaFunctionUrlResponse::json(200, &json!({})).with_header("x-note", "line\nbreak");
        assert!(!answer.headers.contains_key("x-note"));
    }

    /// The repository's own fixture, as `cargo lambda invoke` sends it, reads as the published type.
    #[test]
    fn the_repositorys_function_url_fixture_is_the_published_shape() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/function-url/submit-job.json");
        let request: LambdaFunctionUrlRequest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(request.method(), "POST");
        assert!(request.caller().is_some(), "the fixture is signed");
        assert!(!request.body_bytes().unwrap().is_empty());
    }
}
