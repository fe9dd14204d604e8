//! A Lambda function URL with `AuthType: AWS_IAM` in front of a [`LambdaHost`], doing what AWS does before the
//! function sees a request: the caller must be allowed `lambda:InvokeFunctionUrl` (with
//! `lambda:FunctionUrlAuthType`) and, for URLs made since October 2025, `lambda:InvokeFunction` through the URL
//! (`lambda:InvokedViaFunctionUrl`); a caller who is not is answered 403 and the function never runs. A caller
//! who is gets the request as payload format 2.0 with its IAM identity in `requestContext.authorizer.iam`.
//!
//! [`FunctionUrlServer`] puts the same URL on a loopback port for HTTP clients (schemathesis, curl, other
//! languages): the request's SigV4 signature is verified first (service `lambda`, the function's region), as AWS
//! does, and the body and headers reach the function as sent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use aws_lambda_events::http::HeaderValue;
use aws_lambda_events::http::header::HOST;
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlRequestContext, LambdaFunctionUrlRequestContextAuthorizerDescription,
    LambdaFunctionUrlRequestContextAuthorizerIamDescription, LambdaFunctionUrlRequestContextHttpDescription,
    LambdaFunctionUrlResponse,
};
use serde_json::{Value, json};

use crate::http_server::LoopbackServer;
use crate::iam::Check;
use crate::iam::calls::ACCOUNT;
use crate::lambda_host::{InvokeError, LambdaHost};
use crate::roles::RoleCredentials;
use crate::sigv4::{self, HttpRequest};
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
        let request = HttpRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            ..HttpRequest::default()
        };
        Ok(self.forward(caller, &request, body.is_some()).await?.into())
    }

    /// `request` from `caller`, whose signature has been verified (none: unsigned), as the URL answers it.
    async fn forward(
        &self,
        caller: Option<&RoleCredentials>,
        request: &HttpRequest,
        has_body: bool,
    ) -> Result<RawAnswer, InvokeError> {
        let Some(caller) = caller else { return Ok(RawAnswer::url_message(403, "Forbidden")) };
        let checks = vec![
            Check::new("lambda:InvokeFunctionUrl", self.function_arn.clone())
                .with("lambda:FunctionUrlAuthType", "AWS_IAM")
                .with("lambda:FunctionArn", self.function_arn.clone()),
            Check::new("lambda:InvokeFunction", self.function_arn.clone()).with("lambda:InvokedViaFunctionUrl", "true"),
        ];
        if self.iam.authorize_checks(&caller.access_key_id, "lambda:InvokeFunctionUrl", checks).await.is_err() {
            return Ok(RawAnswer::url_message(403, "Forbidden"));
        }
        let answer = self.host.invoke(&event(caller, request, has_body), self.timeout).await?;
        Ok(read_raw(answer.response))
    }
}

/// A [`FunctionUrl`] on a loopback port: HTTP requests signed with SigV4 by one of its callers' credentials
/// reach the function, others are answered 403 as AWS answers them. Dropping it stops it.
#[derive(Debug)]
pub struct FunctionUrlServer {
    server: LoopbackServer,
}

impl FunctionUrlServer {
    /// Serves `function_arn` from `host` (invocations stopped after `timeout`) for requests signed by any of
    /// `callers`; IAM then decides, with their policies, whether each may invoke it.
    pub fn start(
        emulator: &Emulator,
        host: Arc<LambdaHost>,
        function_arn: &str,
        timeout: Duration,
        callers: Vec<RoleCredentials>,
    ) -> std::io::Result<Self> {
        let iam = emulator.iam().clone();
        let function_arn: Arc<str> = function_arn.into();
        let region: Arc<str> = function_arn.split(':').nth(3).unwrap_or("us-east-1").into();
        let callers: Arc<[RoleCredentials]> = callers.into();
        let server = LoopbackServer::start("function-url", move |incoming: hyper::Request<hyper::body::Incoming>| {
            let (host, iam, function_arn, region, callers) =
                (host.clone(), iam.clone(), function_arn.clone(), region.clone(), callers.clone());
            async move {
                let url = FunctionUrl { host: &host, iam, function_arn: function_arn.to_string(), timeout };
                let (parts, body) = incoming.into_parts();
                let body = match body.collect().await {
                    Ok(collected) => collected.to_bytes().to_vec(),
                    Err(_) => return RawAnswer::url_message(400, "Bad Request").into_http(),
                };
                let request = HttpRequest {
                    method: parts.method.as_str().to_owned(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(name, value)| {
                            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into())
                        })
                        .collect(),
                    body,
                };
                let caller = sigv4::verify(&request, &callers, &region, "lambda", SystemTime::now());
                if let Err(why) = &caller {
                    tracing::debug!(%why, path = %request.path, "function URL: signature refused");
                }
                let has_body = !request.body.is_empty();
                match url.forward(caller.ok(), &request, has_body).await {
                    Ok(answer) => answer.into_http(),
                    Err(e) => {
                        tracing::warn!(error = %e, "function URL: the invocation failed");
                        RawAnswer::url_message(502, "Internal Server Error").into_http()
                    }
                }
            }
        })?;
        Ok(Self { server })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }
}

/// What the URL answers, as bytes.
#[derive(Debug, Clone, PartialEq)]
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    refused_by_url: bool,
}

impl RawAnswer {
    /// An answer of the URL itself: `{"Message": …}`.
    fn url_message(status: u16, message: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"Message": message}).to_string().into_bytes(),
            refused_by_url: true,
        }
    }

    fn into_http(self) -> hyper::Response<Full<Bytes>> {
        let mut response = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() =
            hyper::StatusCode::from_u16(self.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) =
                (aws_lambda_events::http::HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

impl From<RawAnswer> for UrlResponse {
    fn from(raw: RawAnswer) -> Self {
        let text = String::from_utf8_lossy(&raw.body).into_owned();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        let headers = raw.headers.into_iter().map(|(name, value)| (name, json!(value))).collect();
        UrlResponse { status: raw.status, headers: Value::Object(headers), body, refused_by_url: raw.refused_by_url }
    }
}

/// The function's answer as a URL reads it: an answer with a `statusCode` is a response (AWS's published
/// shape; a base64 body is decoded); any other answer is the body of a 200; a response that does not read is a
/// 502.
fn read_raw(answer: Value) -> RawAnswer {
    let bad_gateway = || RawAnswer::url_message(502, "Internal Server Error");
    if answer.get("statusCode").is_none() {
        return RawAnswer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: answer.to_string().into_bytes(),
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
    let body = if response.is_base64_encoded {
        match base64::engine::general_purpose::STANDARD.decode(&text) {
            Ok(bytes) => bytes,
            Err(_) => return bad_gateway(),
        }
    } else {
        text.into_bytes()
    };
    let headers = response
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    RawAnswer { status, headers, body, refused_by_url: false }
}

#[cfg(test)]
fn read_answer(answer: Value) -> UrlResponse {
    read_raw(answer).into()
}

/// The request as payload format 2.0, with the caller's identity as AWS fills it in after verifying the
/// signature. The body is passed as text when it is UTF-8 of a textual content type, in base64 otherwise (as AWS
/// does); `has_body` tells an empty body from none.
fn event(caller: &RoleCredentials, sent: &HttpRequest, has_body: bool) -> Value {
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
    http.method = Some(sent.method.clone());
    http.path = Some(sent.path.clone());
    http.protocol = Some("HTTP/1.1".to_owned());
    http.source_ip = Some("127.0.0.1".to_owned());
    http.user_agent = Some(sent.header("user-agent").unwrap_or("localaws").to_owned());

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
    request.raw_path = Some(sent.path.clone());
    request.raw_query_string = Some(sent.query.clone());
    // Header names as AWS passes them: lower case, repeated values joined with commas.
    for (name, value) in &sent.headers {
        let Ok(name) = aws_lambda_events::http::HeaderName::try_from(name.to_ascii_lowercase()) else { continue };
        let joined = match request.headers.get(&name).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier},{value}"),
            None => value.clone(),
        };
        if let Ok(value) = HeaderValue::try_from(joined) {
            request.headers.insert(name, value);
        }
    }
    if !request.headers.contains_key(HOST) {
        request.headers.insert(HOST, HeaderValue::from_static(domain));
    }
    request.request_context = context;
    let textual = sent.header("content-type").is_none_or(|kind| {
        let kind = kind.to_ascii_lowercase();
        kind.starts_with("text/")
            || ["json", "xml", "javascript", "x-www-form-urlencoded"].iter().any(|t| kind.contains(t))
    });
    match std::str::from_utf8(&sent.body) {
        _ if !has_body && sent.body.is_empty() => {}
        Ok(text) if textual => request.body = Some(text.to_owned()),
        _ => {
            request.body = Some(base64::engine::general_purpose::STANDARD.encode(&sent.body));
            request.is_base64_encoded = true;
        }
    }
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
        let sent = HttpRequest {
            method: "POST".into(),
            path: "/jobs".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"{\"a\":1}".to_vec(),
            ..HttpRequest::default()
        };
        let request: LambdaFunctionUrlRequest = serde_json::from_value(event(&caller, &sent, true)).unwrap();
        let iam = request.request_context.authorizer.and_then(|a| a.iam).unwrap();
        assert_eq!(iam.user_arn.as_deref(), Some("arn:aws:sts::123456789012:assumed-role/game-backend/session"));
        assert_eq!(request.request_context.http.method.as_deref(), Some("POST"));
        assert_eq!(request.body.as_deref(), Some("{\"a\":1}"));
        assert_eq!(request.headers["content-type"], "application/json");
        let binary = HttpRequest {
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: vec![0xff, 0],
            ..sent
        };
        let request: LambdaFunctionUrlRequest = serde_json::from_value(event(&caller, &binary, true)).unwrap();
        assert_eq!((request.body.as_deref(), request.is_base64_encoded), (Some("/wA="), true));
    }
}
