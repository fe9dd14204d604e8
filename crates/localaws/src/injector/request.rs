//! What the injector reads of an AWS request to match it against rules: service and region from the SigV4
//! credential scope, the action from the protocol, and the parameters flattened to dotted names.

use hyper::http::request::Parts;
use serde_json::Value;

/// The wire protocol of a request, which decides how an injected error must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// EC2's own query dialect: `<Response><Errors><Error>…`.
    Ec2Query,
    /// awsQuery (Auto Scaling, CloudFormation, IAM, STS): `<ErrorResponse><Error>…`.
    AwsQuery,
    /// awsJson 1.0 / 1.1 (SQS, DynamoDB, EventBridge, ECS): `__type` and `x-amzn-ErrorType`.
    AwsJson,
    /// restXml (S3): `<Error><Code>…`.
    RestXml,
}

#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub service: Option<String>,
    pub region: Option<String>,
    pub action: Option<String>,
    pub protocol: Protocol,
    /// Parameters as `(dotted.name, value)`: form fields as sent, JSON bodies flattened (`Entries.1.Source`).
    pub params: Vec<(String, String)>,
    pub body: bytes::Bytes,
    /// The access key the request is signed with (the `Authorization` header's or a presigned URL's).
    pub access_key: Option<String>,
    /// For S3: the bucket, key and query of the path-style request.
    pub s3_target: Option<S3Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// Empty for bucket calls.
    pub key: String,
    pub query: Vec<(String, String)>,
}

impl RequestInfo {
    pub fn read(parts: &Parts, body: bytes::Bytes) -> Self {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // A presigned URL carries its credential in the query instead of a header.
        let presigned = parts.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "X-Amz-Credential")
                .map(|(_, v)| v.into_owned())
        });
        let credential = header("authorization")
            .and_then(|auth| auth.find("Credential=").map(|at| auth[at + "Credential=".len()..].to_owned()))
            .or(presigned)
            .unwrap_or_default();
        let (access_key, region, service) = credential_scope(&credential);
        let target = header("x-amz-target");
        let content_type = header("content-type").unwrap_or_default();

        if let Some(target) = target {
            let action = target.rsplit('.').next().map(str::to_owned);
            let params = serde_json::from_slice::<Value>(&body).map(|v| flatten(&v)).unwrap_or_default();
            return Self {
                service,
                region,
                action,
                protocol: Protocol::AwsJson,
                params,
                body,
                access_key,
                s3_target: None,
            };
        }
        if content_type.starts_with("application/x-www-form-urlencoded")
            || parts.uri.query().is_some_and(|q| q.contains("Action="))
        {
            let mut params: Vec<(String, String)> =
                url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            if let Some(query) = parts.uri.query() {
                params.extend(
                    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
                );
            }
            let action = params.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.clone());
            let protocol = if service.as_deref() == Some("ec2") { Protocol::Ec2Query } else { Protocol::AwsQuery };
            return Self { service, region, action, protocol, params, body, access_key, s3_target: None };
        }
        let (action, s3_target) =
            if service.as_deref() == Some("s3") { (Some(s3_action(parts)), s3_target(parts)) } else { (None, None) };
        Self { service, region, action, protocol: Protocol::RestXml, params: Vec::new(), body, access_key, s3_target }
    }

    /// Values of every parameter named `name` or ending in `.name` (case-insensitive), so that `InstanceType`
    /// matches `InstanceType`, `LaunchTemplateConfigs.1.Overrides.2.InstanceType` and `instanceType` alike.
    pub fn param_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(key, _)| {
                let last = key.rsplit('.').next().unwrap_or(key);
                last.eq_ignore_ascii_case(name) || key.eq_ignore_ascii_case(name)
            })
            .map(|(_, value)| value.as_str())
    }
}

/// `(access key, region, service)` from `AKID/20261127/us-east-1/ec2/aws4_request` (and what follows it in
/// an `Authorization` header).
fn credential_scope(credential: &str) -> (Option<String>, Option<String>, Option<String>) {
    let credential = credential.split([',', ' ']).next().unwrap_or_default();
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, _, region, service, ..] => {
            (Some((*key).to_owned()), Some((*region).to_owned()), Some((*service).to_owned()))
        }
        _ => (None, None, None),
    }
}

/// Bucket, key and query of a path-style S3 request (`/bucket/key?query`).
fn s3_target(parts: &Parts) -> Option<S3Target> {
    let path = parts.uri.path().trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return None;
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| s.to_owned())
    };
    let query = parts
        .uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    Some(S3Target { bucket: decode(bucket), key: decode(key), query })
}

fn flatten(value: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        let join = |key: &str| if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(&join(k), v, out)),
            Value::Array(items) => {
                items.iter().enumerate().for_each(|(i, v)| walk(&join(&(i + 1).to_string()), v, out))
            }
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            Value::Null => {}
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// S3 has no action on the wire; name the common ones from method and path.
fn s3_action(parts: &Parts) -> String {
    let path = parts.uri.path().trim_start_matches('/');
    let has_key = path.split_once('/').is_some_and(|(_, key)| !key.is_empty());
    let query = parts.uri.query().unwrap_or_default();
    match (parts.method.as_str(), has_key) {
        ("PUT", true) => "PutObject",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("DELETE", true) => "DeleteObject",
        ("PUT", false) => "CreateBucket",
        ("DELETE", false) => "DeleteBucket",
        ("HEAD", false) => "HeadBucket",
        ("GET", false) if query.contains("list-type=2") => "ListObjectsV2",
        ("GET", false) => "ListObjects",
        ("POST", _) if query.contains("delete") => "DeleteObjects",
        (method, _) => return method.to_owned(),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    const AUTH_EC2: &str =
        "AWS4-HMAC-SHA256 Credential=test/20261127/us-west-2/ec2/aws4_request, SignedHeaders=host, Signature=x";

    #[test]
    fn reads_an_ec2_query_request() {
        let body =
            "Action=RunInstances&Version=2016-11-15&InstanceType=g5.xlarge&Placement.AvailabilityZone=us-west-2a";
        let info = RequestInfo::read(
            &parts("POST", "/", &[("authorization", AUTH_EC2), ("content-type", "application/x-www-form-urlencoded")]),
            body.into(),
        );
        assert_eq!(info.service.as_deref(), Some("ec2"));
        assert_eq!(info.region.as_deref(), Some("us-west-2"));
        assert_eq!(info.action.as_deref(), Some("RunInstances"));
        assert_eq!(info.protocol, Protocol::Ec2Query);
        assert_eq!(info.param_values("InstanceType").collect::<Vec<_>>(), vec!["g5.xlarge"]);
        assert_eq!(info.param_values("AvailabilityZone").collect::<Vec<_>>(), vec!["us-west-2a"]);
    }

    #[test]
    fn reads_a_json_request() {
        let info = RequestInfo::read(
            &parts(
                "POST",
                "/",
                &[
                    ("authorization", "AWS4-HMAC-SHA256 Credential=test/20261127/us-east-1/dynamodb/aws4_request"),
                    ("x-amz-target", "DynamoDB_20120810.PutItem"),
                ],
            ),
            r#"{"TableName":"dedup","Item":{"pk":{"S":"e1"}}}"#.into(),
        );
        assert_eq!(info.action.as_deref(), Some("PutItem"));
        assert_eq!(info.protocol, Protocol::AwsJson);
        assert_eq!(info.param_values("TableName").collect::<Vec<_>>(), vec!["dedup"]);
        assert_eq!(info.param_values("Item.pk.S").collect::<Vec<_>>(), vec!["e1"]);
    }

    #[test]
    fn names_s3_actions() {
        let auth = [("authorization", "AWS4-HMAC-SHA256 Credential=test/20261127/us-east-1/s3/aws4_request")];
        assert_eq!(
            RequestInfo::read(&parts("PUT", "/bucket/a/b.png", &auth), bytes::Bytes::new()).action.as_deref(),
            Some("PutObject")
        );
        assert_eq!(
            RequestInfo::read(&parts("GET", "/bucket?list-type=2", &auth), bytes::Bytes::new()).action.as_deref(),
            Some("ListObjectsV2")
        );
    }
}
