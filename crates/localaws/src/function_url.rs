//! A Lambda function URL with `AuthType: AWS_IAM` in front of a [`LambdaHost`], doing what AWS does before the
//! function sees a request: the caller must be allowed `lambda:InvokeFunctionUrl` (with
//! `lambda:FunctionUrlAuthType`) and, for URLs made since October 2025, `lambda:InvokeFunction` through the URL
//! (`lambda:InvokedViaFunctionUrl`); a caller who is not is answered 403 and the function never runs. A caller
//! who is gets the request as payload format 2.0 with its IAM identity in `requestContext.authorizer.iam`.

use std::time::Duration;

use aws_lambda_events::http::HeaderValue;
use aws_lambda_events::http::header::{CONTENT_TYPE, HOST};
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlRequestContext, LambdaFunctionUrlRequestContextAuthorizerDescription,
    LambdaFunctionUrlRequestContextAuthorizerIamDescription, LambdaFunctionUrlRequestContextHttpDescription,
    LambdaFunctionUrlResponse,
};
use serde_json::{Value, json};

use crate::iam::Check;
use crate::iam::calls::ACCOUNT;
use crate::lambda_host::{InvokeError, LambdaHost};
use crate::roles::RoleCredentials;
use crate::{Emulator, Iam};

/// What the URL answered: the function's response, or AWS's own refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlResponse {
    pub status: u16,
    /// The response's headers, as the function set them.
    pub headers: Value,
    pub body: Value,
    /// Answered by the URL without invoking the function.
    pub refused_by_url: bool,
}

#[derive(Debug)]
pub struct FunctionUrl<'a> {
    host: &'a LambdaHost,
    iam: Iam,
    function_arn: String,
    timeout: Duration,
}

impl<'a> FunctionUrl<'a> {
    /// The URL of `function_arn` served by `host`, invocations stopped after `timeout` (the function's own).
    pub fn new(emulator: &Emulator, host: &'a LambdaHost, function_arn: &str, timeout: Duration) -> Self {
        Self { host, iam: emulator.iam().clone(), function_arn: function_arn.to_owned(), timeout }
    }

    /// One request, signed by `caller` (none: unsigned).
    pub async fn request(
        &self,
        caller: Option<&RoleCredentials>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<UrlResponse, InvokeError> {
        let forbidden = || UrlResponse {
            status: 403,
            headers: json!({"content-type": "application/json"}),
            body: json!({"Message": "Forbidden"}),
            refused_by_url: true,
        };
        let Some(caller) = caller else { return Ok(forbidden()) };
        let checks = vec![
            Check::new("lambda:InvokeFunctionUrl", self.function_arn.clone())
                .with("lambda:FunctionUrlAuthType", "AWS_IAM")
                .with("lambda:FunctionArn", self.function_arn.clone()),
            Check::new("lambda:InvokeFunction", self.function_arn.clone()).with("lambda:InvokedViaFunctionUrl", "true"),
        ];
        if self.iam.authorize_checks(&caller.access_key_id, "lambda:InvokeFunctionUrl", checks).await.is_err() {
            return Ok(forbidden());
        }
        let answer = self.host.invoke(&event(caller, method, path, body), self.timeout).await?;
        Ok(read_answer(answer.response))
    }
}

/// The function's answer as a URL reads it: an answer with a `statusCode` is a response (AWS's published
/// shape); any other answer is the body of a 200; a response that does not read is a 502.
fn read_answer(answer: Value) -> UrlResponse {
    let bad_gateway = || UrlResponse {
        status: 502,
        headers: json!({"content-type": "application/json"}),
        body: json!({"Message": "Internal Server Error"}),
        refused_by_url: true,
    };
    if answer.get("statusCode").is_none() {
        return UrlResponse {
            status: 200,
            headers: json!({"content-type": "application/json"}),
            body: answer,
            refused_by_url: false,
        };
    }
    // The fields a function may leave out, as AWS fills them.
    let mut answer = answer;
    for (field, default) in [("isBase64Encoded", json!(false)), ("cookies", json!([]))] {
        if let Some(map) = answer.as_object_mut() {
            map.entry(field).or_insert(default);
        }
    }
    let Ok(response) = serde_json::from_value::<LambdaFunctionUrlResponse>(answer) else { return bad_gateway() };
    let Ok(status) = u16::try_from(response.status_code) else { return bad_gateway() };
    let text = response.body.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
    };
    let headers = response
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap_or_default())))
        .collect::<serde_json::Map<_, _>>();
    UrlResponse { status, headers: Value::Object(headers), body, refused_by_url: false }
}

/// The request as payload format 2.0, with the caller's identity as AWS fills it in after verifying the
/// signature.
fn event(caller: &RoleCredentials, method: &str, path: &str, body: Option<&Value>) -> Value {
    // `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`: the role's unique id is AWS's; any stable stand-in does.
    let session = caller.arn.rsplit('/').next().unwrap_or_default();
    let role_id = format!("AROA{}", caller.access_key_id.trim_start_matches("ASIA"));
    let now = now_millis();
    let domain = "local.lambda-url.us-east-1.on.aws";

    let mut iam = LambdaFunctionUrlRequestContextAuthorizerIamDescription::default();
    iam.access_key = Some(caller.access_key_id.clone());
    iam.account_id = Some(ACCOUNT.to_owned());
    iam.caller_id = Some(format!("{role_id}:{session}"));
    iam.user_arn = Some(caller.arn.clone());
    iam.user_id = Some(role_id);
    let mut authorizer = LambdaFunctionUrlRequestContextAuthorizerDescription::default();
    authorizer.iam = Some(iam);

    let mut http = LambdaFunctionUrlRequestContextHttpDescription::default();
    http.method = Some(method.to_owned());
    http.path = Some(path.to_owned());
    http.protocol = Some("HTTP/1.1".to_owned());
    http.source_ip = Some("127.0.0.1".to_owned());
    http.user_agent = Some("localaws".to_owned());

    let mut context = LambdaFunctionUrlRequestContext::default();
    context.account_id = Some(ACCOUNT.to_owned());
    context.apiid = Some("local".to_owned());
    context.authorizer = Some(authorizer);
    context.domain_name = Some(domain.to_owned());
    context.domain_prefix = Some("local".to_owned());
    context.request_id = Some(format!("r-{now}"));
    context.time_epoch = now;
    context.http = http;

    let mut request = LambdaFunctionUrlRequest::default();
    request.version = Some("2.0".to_owned());
    request.raw_path = Some(path.to_owned());
    request.raw_query_string = Some(String::new());
    request.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    request.headers.insert(HOST, HeaderValue::from_static(domain));
    request.request_context = context;
    request.body = body.map(Value::to_string);
    request.is_base64_encoded = false;
    serde_json::to_value(&request).unwrap_or_default()
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_a_url_reads_them() {
        let full = read_answer(json!({
            "statusCode": 201, "headers": {"content-type": "application/json"}, "body": "{\"job_id\":\"a\"}",
            "isBase64Encoded": false, "cookies": []
        }));
        assert_eq!((full.status, full.body.clone(), full.refused_by_url), (201, json!({"job_id": "a"}), false));
        assert_eq!(full.headers["content-type"], "application/json");
        let short = read_answer(json!({"statusCode": 404, "body": "no such job"}));
        assert_eq!((short.status, short.body), (404, json!("no such job")));
        let bare = read_answer(json!({"job_id": "a"}));
        assert_eq!((bare.status, bare.body), (200, json!({"job_id": "a"})));
        for unreadable in [json!({"statusCode": "two hundred"}), json!({"statusCode": 70000})] {
            assert_eq!(read_answer(unreadable).status, 502);
        }
    }

    #[test]
    fn the_request_is_the_published_shape_with_the_callers_identity() {
        let caller = RoleCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: "token".into(),
            arn: "arn:aws:sts::123456789012:assumed-role/game-backend/session".into(),
        };
        let request: LambdaFunctionUrlRequest =
            serde_json::from_value(event(&caller, "POST", "/jobs", Some(&json!({"a": 1})))).unwrap();
        let iam = request.request_context.authorizer.and_then(|a| a.iam).unwrap();
        assert_eq!(iam.user_arn.as_deref(), Some("arn:aws:sts::123456789012:assumed-role/game-backend/session"));
        assert_eq!(request.request_context.http.method.as_deref(), Some("POST"));
        assert_eq!(request.body.as_deref(), Some("{\"a\":1}"));
    }
}
