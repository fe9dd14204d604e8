//! Where a job's result may be sent. A job's `reply_to` must be an SQS queue of the deployment's own account that
//! carries the tag `gameforge:reply-to=<deployment prefix>`: the queues the workers' role may send to. Checked at
//! submission, so that a result is neither aimed at someone else's queue nor lost to a queue that does not
//! exist.

use std::collections::HashMap;
use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use gameforge_aws::PortError;

use crate::clients::sqs_for_queue;

/// The tag a reply queue carries, valued with the deployment's prefix.
pub const REPLY_TO_TAG: &str = "gameforge:reply-to";

/// What a deployment's reply queues look like, read from its job queue's URL: the job queue is
/// `<prefix>-jobs` in the deployment's account (`infra/gameforge.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRule {
    pub account: String,
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyToError {
    #[error("{url} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)")]
    NotAQueue { url: String },
    #[error("{url} is a queue of account {account}; results go only to queues of this deployment's account {expected}")]
    OtherAccount { url: String, account: String, expected: String },
    #[error("{url} does not exist; create it (tagged {REPLY_TO_TAG}={expected}) before naming it")]
    Missing { url: String, expected: String },
    #[error(
        "{url} is not tagged {REPLY_TO_TAG}={expected} ({found}); this deployment's workers send results only to queues so tagged"
    )]
    Untagged { url: String, expected: String, found: String },
    #[error("the job queue {job_queue} is not named <prefix>-jobs, so the deployment's reply queues cannot be told")]
    UnknownDeployment { job_queue: String },
}

/// `(account, queue name)` of a queue URL: its last two path segments.
fn account_and_name(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let mut parts = rest.split('/');
    let (_host, account, name) = (parts.next()?, parts.next()?, parts.next()?);
    let name_ok = !name.is_empty()
        && name.len() <= 80
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none() && name_ok && account_ok).then_some((account, name))
}

impl ReplyRule {
    pub fn for_job_queue(job_queue_url: &str) -> Result<Self, ReplyToError> {
        let unknown = || ReplyToError::UnknownDeployment { job_queue: job_queue_url.to_string() };
        let (account, name) = account_and_name(job_queue_url).ok_or_else(unknown)?;
        let prefix = name.strip_suffix("-jobs").filter(|p| !p.is_empty()).ok_or_else(unknown)?;
        Ok(Self { account: account.to_string(), prefix: prefix.to_string() })
    }

    /// What the URL alone says: a queue, of this account.
    pub fn check_url(&self, url: &str) -> Result<(), ReplyToError> {
        let (account, _) = account_and_name(url).ok_or_else(|| ReplyToError::NotAQueue { url: url.to_string() })?;
        if account != self.account {
            return Err(ReplyToError::OtherAccount {
                url: url.to_string(),
                account: account.to_string(),
                expected: self.account.clone(),
            });
        }
        Ok(())
    }

    /// What the queue's tags say (`None`: the queue does not exist).
    pub fn check_tags(&self, url: &str, tags: Option<&HashMap<String, String>>) -> Result<(), ReplyToError> {
        let Some(tags) = tags else {
            return Err(ReplyToError::Missing { url: url.to_string(), expected: self.prefix.clone() });
        };
        match tags.get(REPLY_TO_TAG) {
            Some(value) if *value == self.prefix => Ok(()),
            found => Err(ReplyToError::Untagged {
                url: url.to_string(),
                expected: self.prefix.clone(),
                found: found.map_or_else(|| "it has no such tag".to_string(), |v| format!("it says {v:?}")),
            }),
        }
    }
}

/// The reply queues a submission may name.
pub trait ReplyQueues: Send + Sync + 'static {
    /// `Ok(Err(_))`: the queue breaks the rule, with why; `Err(_)`: the answer could not be had.
    fn check(&self, url: &str) -> impl Future<Output = Result<Result<(), ReplyToError>, PortError>> + Send;
}

/// The rule checked against SQS: the URL first, then the queue's tags (`ListQueueTags`, which also says whether
/// it exists).
#[derive(Debug, Clone)]
pub struct SqsReplyQueues {
    config: SdkConfig,
    rule: Result<ReplyRule, ReplyToError>,
}

impl SqsReplyQueues {
    pub fn new(config: &SdkConfig, job_queue_url: &str) -> Self {
        Self { config: config.clone(), rule: ReplyRule::for_job_queue(job_queue_url) }
    }
}

impl ReplyQueues for SqsReplyQueues {
    async fn check(&self, url: &str) -> Result<Result<(), ReplyToError>, PortError> {
        let rule = match &self.rule {
            Ok(rule) => rule,
            Err(e) => return Ok(Err(e.clone())),
        };
        if let Err(e) = rule.check_url(url) {
            return Ok(Err(e));
        }
        let answer = sqs_for_queue(&self.config, url).list_queue_tags().queue_url(url).send().await;
        let tags = match answer {
            Ok(out) => Some(out.tags().cloned().unwrap_or_default()),
            Err(e)
                if matches!(
                    e.as_service_error().and_then(|s| s.code()),
                    Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
                ) =>
            {
                None
            }
            Err(e) => return Err(PortError::sdk("ListQueueTags", &e)),
        };
        Ok(rule.check_tags(url, tags.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ReplyRule {
        ReplyRule::for_job_queue("https://sqs.us-east-1.amazonaws.com/123456789012/gameforge-jobs").unwrap()
    }

    #[test]
    fn the_rule_is_read_from_the_job_queue_url() {
        assert_eq!(rule(), ReplyRule { account: "123456789012".into(), prefix: "gameforge".into() });
        let local = ReplyRule::for_job_queue("http://127.0.0.1:4566/123456789012/gf-jobs").unwrap();
        assert_eq!(local.prefix, "gf");
        for odd in ["https://sqs.us-east-1.amazonaws.com/123456789012/jobs", "not a url", "http://h/1/gf-jobs"] {
            assert!(matches!(ReplyRule::for_job_queue(odd), Err(ReplyToError::UnknownDeployment { .. })), "{odd}");
        }
    }

    #[test]
    fn only_queues_of_the_deployments_account_pass_the_url_check() {
        let rule = rule();
        rule.check_url("https://sqs.eu-west-1.amazonaws.com/123456789012/backend-results").unwrap();
        let other = rule.check_url("https://sqs.us-east-1.amazonaws.com/210987654321/backend-results").unwrap_err();
        assert!(other.to_string().contains("account 210987654321"), "{other}");
        for bad in ["https://example.com/x", "https://sqs.us-east-1.amazonaws.com/123456789012/a/b", "ftp://q/1/2"] {
            assert!(matches!(rule.check_url(bad), Err(ReplyToError::NotAQueue { .. })), "{bad}");
        }
    }

    #[test]
    fn the_queue_must_carry_the_deployments_tag() {
        let rule = rule();
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/backend-results";
        let tagged = HashMap::from([(REPLY_TO_TAG.to_string(), "gameforge".to_string())]);
        rule.check_tags(url, Some(&tagged)).unwrap();
        let other = HashMap::from([(REPLY_TO_TAG.to_string(), "someone-else".to_string())]);
        let error = rule.check_tags(url, Some(&other)).unwrap_err().to_string();
        assert!(error.contains("gameforge:reply-to=gameforge") && error.contains("someone-else"), "{error}");
        assert!(matches!(rule.check_tags(url, Some(&HashMap::new())), Err(ReplyToError::Untagged { .. })));
        assert!(matches!(rule.check_tags(url, None), Err(ReplyToError::Missing { .. })));
    }
}
