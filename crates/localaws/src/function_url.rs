//! A Lambda function URL with `AuthType: AWS_IAM` in front of a [`LambdaHost`], doing what AWS does before the
//! function sees a request: the caller must be allowed `lambda:InvokeFunctionUrl` (with
//! `lambda:FunctionUrlAuthType`) and, for URLs made since October 2025, `lambda:InvokeFunction` through the URL
//! (`lambda:InvokedViaFunctionUrl`); a caller who is not is answered 403 and the function never runs. A caller
//! who is gets the request as payload format 2.0 with its IAM identity in `requestContext.authorizer.iam`.

use std::time::Duration;

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
        let status = answer.response["statusCode"].as_u64().unwrap_or(502) as u16;
        let body = match answer.response["body"].as_str() {
            Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
            None => Value::Null,
        };
        Ok(UrlResponse { status, headers: answer.response["headers"].clone(), body, refused_by_url: false })
    }
}

/// The request as payload format 2.0, with the caller's identity as AWS fills it in after verifying the
/// signature.
fn event(caller: &RoleCredentials, method: &str, path: &str, body: Option<&Value>) -> Value {
    // `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`: the role's unique id is AWS's; any stable stand-in does.
    let session = caller.arn.rsplit('/').next().unwrap_or_default();
    let role_id = format!("AROA{}", caller.access_key_id.trim_start_matches("ASIA"));
    let now = now_millis();
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "local.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "local",
            "authorizer": {"iam": {
                "accessKey": caller.access_key_id, "accountId": ACCOUNT, "callerId": format!("{role_id}:{session}"),
                "cognitoIdentity": null, "principalOrgId": null, "userArn": caller.arn, "userId": role_id
            }},
            "domainName": "local.lambda-url.us-east-1.on.aws", "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "localaws"},
            "requestId": format!("r-{now}"), "routeKey": "$default", "stage": "$default", "timeEpoch": now
        },
        "body": body.map(Value::to_string), "isBase64Encoded": false
    })
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
