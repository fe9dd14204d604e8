//! Acting as a deployed principal: a role of the template, assumed, whose calls IAM enforcement checks against
//! the policies the template gave it.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use gameforge_aws::config::AwsSettings;
use serde_json::Value;

use crate::iam::{NamedPolicy, Principal};
use crate::{Emulator, Error};

/// Temporary credentials of an assumed role, enforced by the emulator's IAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// The assumed-role session's ARN: what `sts:GetCallerIdentity` answers.
    pub arn: String,
}

impl RoleCredentials {
    /// The environment a process acting as the role needs, besides [`Emulator::env`]'s endpoint and settings
    /// (these override its emulator-wide key).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_access_key.clone()),
            ("AWS_SESSION_TOKEN".into(), self.session_token.clone()),
        ]
    }

    fn provider(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            Some(self.session_token.clone()),
            None,
            "localaws-role",
        )
    }
}

impl Emulator {
    /// Assumes `role` (a name or ARN of a role the emulator holds, such as one the template made) and enforces
    /// IAM on every call made with the credentials: each is checked against the role's inline policies and the
    /// managed policies attached to it, as read back from the emulator. `label` names the principal in reports.
    pub async fn assume_role(&self, role: &str, label: &str) -> Result<RoleCredentials, Error> {
        let admin = self.sdk_config().await;
        let fail = |what: &str, e: String| Error::Emulator(format!("assuming {role}: {what}: {e}"));
        let iam = aws_sdk_iam::Client::new(&admin);
        let name = role.rsplit('/').next().unwrap_or(role);
        let found = iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| fail("GetRole", aws_sdk_iam::error::DisplayErrorContext(e).to_string()))?;
        let role_arn = found.role().map(|r| r.arn().to_owned()).unwrap_or_default();
        let mut policies = Vec::new();
        let inline = iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| fail("ListRolePolicies", aws_sdk_iam::error::DisplayErrorContext(e).to_string()))?;
        for policy_name in inline.policy_names() {
            let got = iam
                .get_role_policy()
                .role_name(name)
                .policy_name(policy_name)
                .send()
                .await
                .map_err(|e| fail("GetRolePolicy", aws_sdk_iam::error::DisplayErrorContext(e).to_string()))?;
            policies.push(NamedPolicy { name: policy_name.clone(), policy: document(got.policy_document())? });
        }
        let attached =
            iam.list_attached_role_policies().role_name(name).send().await.map_err(|e| {
                fail("ListAttachedRolePolicies", aws_sdk_iam::error::DisplayErrorContext(e).to_string())
            })?;
        for policy in attached.attached_policies() {
            let arn = policy.policy_arn().unwrap_or_default();
            let meta = iam
                .get_policy()
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| fail("GetPolicy", aws_sdk_iam::error::DisplayErrorContext(e).to_string()))?;
            let version = meta.policy().and_then(|p| p.default_version_id()).unwrap_or("v1");
            let got = iam
                .get_policy_version()
                .policy_arn(arn)
                .version_id(version)
                .send()
                .await
                .map_err(|e| fail("GetPolicyVersion", aws_sdk_iam::error::DisplayErrorContext(e).to_string()))?;
            let text = got.policy_version().and_then(|v| v.document()).unwrap_or_default();
            policies.push(NamedPolicy { name: arn.to_owned(), policy: document(text)? });
        }
        let assumed = aws_sdk_sts::Client::new(&admin)
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name(label.replace(|c: char| !c.is_ascii_alphanumeric(), "-"))
            .send()
            .await
            .map_err(|e| fail("AssumeRole", aws_sdk_sts::error::DisplayErrorContext(e).to_string()))?;
        let credentials = assumed.credentials().ok_or_else(|| fail("AssumeRole", "no credentials".into()))?;
        let session_arn = assumed.assumed_role_user().map(|u| u.arn().to_owned()).unwrap_or_default();
        let granted = RoleCredentials {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: credentials.secret_access_key().to_owned(),
            session_token: credentials.session_token().to_owned(),
            arn: session_arn.clone(),
        };
        self.faults().iam().register(
            &granted.access_key_id,
            Principal { label: label.to_owned(), arn: session_arn, role_arn, policies },
        )?;
        Ok(granted)
    }

    /// Makes a role of the account's own (as an operator makes the game backend's role), with `managed_policies`
    /// (ARNs, such as the template's caller policies) attached, and assumes it like [`Emulator::assume_role`].
    pub async fn role_with_policies(&self, name: &str, managed_policies: &[&str]) -> Result<RoleCredentials, Error> {
        let admin = self.sdk_config().await;
        let fail = |what: &str, e: String| Error::Emulator(format!("role {name}: {what}: {e}"));
        let iam = aws_sdk_iam::Client::new(&admin);
        let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", crate::iam::calls::ACCOUNT)},
            "Action": "sts:AssumeRole"}]});
        iam.create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .map_err(|e| fail("CreateRole", aws_sdk_iam::error::DisplayErrorContext(e).to_string()))?;
        for policy in managed_policies {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(*policy)
                .send()
                .await
                .map_err(|e| fail("AttachRolePolicy", aws_sdk_iam::error::DisplayErrorContext(e).to_string()))?;
        }
        self.assume_role(name, name).await
    }

    /// SDK configuration for `region` that acts as the role, with the tests' retry settings.
    pub async fn sdk_config_as(&self, role: &RoleCredentials, region: &str) -> SdkConfig {
        self.sdk_config_as_with(role, region, &Self::settings()).await
    }

    pub async fn sdk_config_as_with(&self, role: &RoleCredentials, region: &str, settings: &AwsSettings) -> SdkConfig {
        settings
            .apply(aws_config::defaults(BehaviorVersion::latest()))
            .endpoint_url(self.endpoint())
            .region(Region::new(region.to_owned()))
            .credentials_provider(role.provider())
            .load()
            .await
    }

    /// [`Emulator::env`] acting as the role.
    pub fn env_as(&self, role: &RoleCredentials) -> Vec<(String, String)> {
        let mut env = self.env();
        let own = role.env();
        env.retain(|(k, _)| own.iter().all(|(o, _)| o != k));
        env.extend(own);
        env
    }
}

/// A policy document as IAM returns it: URL-encoded JSON. moto returns it plain, and a document CloudFormation
/// made as Python's `repr` of it.
fn document(text: &str) -> Result<Value, Error> {
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let decoded: String = url::form_urlencoded::parse(format!("d={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    serde_json::from_str(&decoded)
        .or_else(|_| serde_json::from_str(&python_literal_as_json(text)))
        .map_err(|e| Error::Emulator(format!("unreadable policy document: {e}: {text}")))
}

/// Python's `repr` of a JSON-like value, as JSON: single-quoted strings, `True`, `False`, `None`.
fn python_literal_as_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let quote = c;
                let mut literal = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                literal.push(match escaped {
                                    'n' => '\n',
                                    't' => '\t',
                                    other => other,
                                });
                            }
                        }
                        c if c == quote => break,
                        c => literal.push(c),
                    }
                }
                out.push_str(&Value::String(literal).to_string());
            }
            c if c.is_ascii_alphabetic() => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek().filter(|n| n.is_ascii_alphanumeric()) {
                    word.push(next);
                    chars.next();
                }
                out.push_str(match word.as_str() {
                    "True" => "true",
                    "False" => "false",
                    "None" => "null",
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_document_is_read_in_every_form_iam_or_moto_gives_it() {
        let expected = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": true}}}]});
        let plain = expected.to_string();
        let encoded: String = url::form_urlencoded::byte_serialize(plain.as_bytes()).collect();
        let python = "{'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 's3:GetObject', \
                      'Resource': '*', 'Condition': {'Bool': {'aws:SecureTransport': True}}}]}";
        for text in [plain.as_str(), encoded.as_str(), python] {
            assert_eq!(document(text).unwrap(), expected, "{text}");
        }
        assert!(document("{'not closed': ").is_err());
    }
}
