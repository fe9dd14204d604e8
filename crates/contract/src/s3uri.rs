use std::fmt;
use std::str::FromStr;

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// An `s3://bucket/prefix` location. The prefix may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct S3Uri(String);

impl JsonSchema for S3Uri {
    fn schema_name() -> Cow<'static, str> {
        "S3Uri".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An S3 location, `s3://bucket` or `s3://bucket/prefix`.",
            "pattern": S3Uri::PATTERN,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an S3 location of the form s3://bucket/prefix")]
pub struct S3UriError(String);

impl S3Uri {
    /// Bucket names as S3 accepts them (3 to 63 characters, lower case, digits, dots and hyphens); a prefix
    /// without whitespace.
    pub const PATTERN: &'static str = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/\S*)?$";

    pub fn parse(text: &str) -> Result<Self, S3UriError> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| S3UriError(text.to_owned()))?;
        let bucket = rest.split('/').next().unwrap_or_default();
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !bucket_ok || rest.chars().any(char::is_whitespace) {
            return Err(S3UriError(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn bucket(&self) -> &str {
        self.0["s3://".len()..].split('/').next().unwrap_or_default()
    }

    /// The key prefix without its leading slash; empty for a bare bucket.
    pub fn prefix(&self) -> &str {
        let rest = &self.0["s3://".len()..];
        rest.split_once('/').map(|(_, prefix)| prefix).unwrap_or("")
    }

    /// The location of `name` under this prefix, with exactly one slash between them.
    pub fn join(&self, name: &str) -> S3Uri {
        let prefix = self.prefix().trim_end_matches('/');
        let name = name.trim_start_matches('/');
        if prefix.is_empty() {
            S3Uri(format!("s3://{}/{name}", self.bucket()))
        } else {
            S3Uri(format!("s3://{}/{prefix}/{name}", self.bucket()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for S3Uri {
    type Err = S3UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for S3Uri {
    type Error = S3UriError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<S3Uri> for String {
    fn from(value: S3Uri) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_bucket_and_prefix() {
        let uri = S3Uri::parse("s3://game-art/renders/2026/").unwrap();
        assert_eq!(uri.bucket(), "game-art");
        assert_eq!(uri.prefix(), "renders/2026/");
        assert_eq!(uri.join("job-1.png").as_str(), "s3://game-art/renders/2026/job-1.png");
    }

    #[test]
    fn a_bare_bucket_has_an_empty_prefix() {
        let uri = S3Uri::parse("s3://game-art").unwrap();
        assert_eq!(uri.prefix(), "");
        assert_eq!(uri.join("a.png").as_str(), "s3://game-art/a.png");
    }

    #[test]
    fn rejects_what_s3_would_reject() {
        for bad in ["game-art/x", "s3://", "s3://UPPER/x", "s3://ab", "s3://-bucket/x", "s3://bucket/with space"] {
            assert!(S3Uri::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn the_pattern_agrees_with_the_parser() {
        let re = regex_lite(S3Uri::PATTERN);
        for text in ["s3://game-art/renders/", "s3://a.b-c/x", "s3://UPPER/x", "s3://ab", "s3://bucket/with space"] {
            assert_eq!(re(text), S3Uri::parse(text).is_ok(), "{text}");
        }
    }

    /// Evaluates the schema pattern through the JSON Schema validator the contract itself uses.
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let validator = jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": pattern}))
            .expect("pattern compiles");
        move |text| validator.is_valid(&serde_json::json!(text))
    }
}
