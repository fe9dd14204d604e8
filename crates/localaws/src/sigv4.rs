//! Verifying a request's AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 …`) the way AWS does at a door
//! it guards itself, such as a function URL with `AuthType: AWS_IAM`: the signature must be the one the caller's
//! secret key makes for this very request (method, path, query, signed headers, body), for the door's region and
//! service, within 15 minutes of now, with the session token of temporary credentials among the signed headers.
//! The canonical request is built as the SDKs and botocore build it (RFC 3986 dot segments removed and the path
//! encoded once more, query pairs sorted as sent, signed headers trimmed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::roles::RoleCredentials;

/// How far a request's `X-Amz-Date` may be from now.
const SKEW: Duration = Duration::from_secs(15 * 60);

/// A request as it arrived: header names in any case, path and query as sent (still percent-encoded).
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// Every value of header `name`, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The caller among `callers` whose key signed `request` for `region` and `service`, or why there is none.
pub fn verify<'a>(
    request: &HttpRequest,
    callers: &'a [RoleCredentials],
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<&'a RoleCredentials, String> {
    let authorization = request.header("authorization").ok_or("the request is not signed")?;
    let fields = authorization.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not an AWS4-HMAC-SHA256 signature")?;
    let field =
        |name: &str| fields.split(',').map(str::trim).find_map(|part| part.strip_prefix(name)?.strip_prefix('='));
    let (credential, signed_headers, signature) =
        match (field("Credential"), field("SignedHeaders"), field("Signature")) {
            (Some(c), Some(h), Some(s)) => (c, h, s),
            _ => return Err("the Authorization header lacks Credential, SignedHeaders or Signature".into()),
        };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, scope_region, scope_service, "aws4_request"] = scope.as_slice() else {
        return Err(format!("malformed credential scope {credential}"));
    };
    if (*scope_region, *scope_service) != (region, service) {
        return Err(format!("signed for {scope_service} in {scope_region}, not {service} in {region}"));
    }
    let caller = callers.iter().find(|c| c.access_key_id == *access_key).ok_or("the access key is not valid")?;
    let amz_date = request.header("x-amz-date").ok_or("no X-Amz-Date")?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| format!("X-Amz-Date {amz_date} does not read"))?;
    let skew = now.duration_since(signed_at).or_else(|_| signed_at.duration_since(now)).unwrap_or_default();
    if skew > SKEW || !amz_date.starts_with(date) {
        return Err(format!("signed at {amz_date}: too far from now, or not the scope's date"));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err("the host header is not signed".into());
    }
    if !caller.session_token.is_empty()
        && (!names.contains(&"x-amz-security-token")
            || request.header("x-amz-security-token") != Some(caller.session_token.as_str()))
    {
        return Err("the security token is missing or not the credentials'".into());
    }
    let body_hash = hex(&Sha256::digest(&request.body));
    if request.header("x-amz-content-sha256").is_some_and(|claimed| claimed != body_hash) {
        return Err("X-Amz-Content-Sha256 is not the body's".into());
    }
    let canonical_headers: String = names
        .iter()
        .map(|name| {
            let values: Vec<String> =
                request.header_values(name).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    let canonical_request = [
        request.method.to_ascii_uppercase(),
        canonical_path(&request.path),
        canonical_query(&request.query),
        canonical_headers,
        signed_headers.to_owned(),
        body_hash,
    ]
    .join("\n");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{}", caller.secret_access_key).as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    if hex(&hmac(&key, to_sign.as_bytes())) != signature {
        return Err("the signature does not match".into());
    }
    Ok(caller)
}

/// The path with dot segments and empty segments removed, then percent-encoded (`%` included) but for
/// unreserved characters and `/`.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let trailing = path.ends_with('/') && !segments.is_empty();
    let normalized = format!("/{}{}", segments.join("/"), if trailing { "/" } else { "" });
    normalized
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query's `key=value` pairs sorted, as sent.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> =
        query.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, ""))).collect();
    pairs.sort_unstable();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// `YYYYMMDDTHHMMSSZ` as an instant.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    if text.len() != 16 || &text[8..9] != "T" || &text[15..] != "Z" {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_caller() -> RoleCredentials {
        RoleCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: String::new(),
            arn: "arn:aws:iam::123456789012:user/example".into(),
        }
    }

    fn at(text: &str) -> SystemTime {
        parse_amz_date(text).unwrap()
    }

    /// The `get-vanilla` case of AWS's SigV4 test suite.
    #[test]
    fn verifies_the_aws_test_suites_vanilla_request() {
        let mut request = HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![
                ("Host".into(), "example.amazonaws.com".into()),
                ("X-Amz-Date".into(), "20150830T123600Z".into()),
                (
                    "Authorization".into(),
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                     SignedHeaders=host;x-amz-date, \
                     Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                        .into(),
                ),
            ],
            ..HttpRequest::default()
        };
        let callers = [example_caller()];
        let now = at("20150830T124000Z");
        assert_eq!(verify(&request, &callers, "us-east-1", "service", now).unwrap().access_key_id, "AKIDEXAMPLE");
        assert!(verify(&request, &callers, "us-west-2", "service", now).is_err(), "another region");
        assert!(verify(&request, &callers, "us-east-1", "service", at("20150830T130000Z")).is_err(), "too late");
        request.path = "/other".into();
        assert_eq!(
            verify(&request, &callers, "us-east-1", "service", now).unwrap_err(),
            "the signature does not match"
        );
        request.path = "/".into();
        request.body = b"x".to_vec();
        assert!(verify(&request, &callers, "us-east-1", "service", now).is_err(), "a body nobody signed");
        request.headers.retain(|(name, _)| name != "Authorization");
        assert_eq!(verify(&request, &callers, "us-east-1", "service", now).unwrap_err(), "the request is not signed");
    }

    #[test]
    fn canonical_paths_and_queries_are_the_sdks() {
        assert_eq!(canonical_path("/jobs/a%20b/./c/../cancel"), "/jobs/a%2520b/cancel");
        assert_eq!(canonical_path("//jobs//"), "/jobs/");
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_query("b=2&a=1&a"), "a=&a=1&b=2");
        assert_eq!(parse_amz_date("19700101T000001Z"), Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(parse_amz_date("20261127T080000Z"), Some(UNIX_EPOCH + Duration::from_secs(1_795_766_400)));
        assert_eq!(parse_amz_date("2026-11-27T08:00:00Z"), None);
    }
}
