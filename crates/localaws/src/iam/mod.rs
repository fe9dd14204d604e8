//! IAM, enforced: every call signed with a deployed principal's credentials is authorized the way AWS would
//! authorize it before the emulator sees it, and a call AWS would deny is answered with AWS's access-denied
//! error and recorded with the statements that did not allow it.
//!
//! moto does not enforce IAM (its own mode knows no conditions), so the decision is made here: [`calls`] says
//! which checks a request makes (actions, resources, condition keys, as the Service Authorization Reference
//! describes them), [`facts`] reads what the checks need to know about existing resources (tags, resource
//! policies, a launch template's contents) from moto, and [`evaluator`] asks AWS's evaluation logic
//! (`@cloud-copilot/iam-simulate`) for the verdict on each check. Principals are the roles the template made:
//! [`crate::Emulator::assume_role`] reads a role's policies back from the emulator and hands out credentials that
//! are enforced. Requests signed with the emulator's own key (`test`: the test or the local run acting as AWS,
//! or as the account's operator) are not.

pub mod calls;
mod evaluator;
mod facts;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde_json::{Map, Value};

pub use calls::Check;
pub use evaluator::NamedPolicy;
use evaluator::{Decision, Evaluator, Question, Verdict};
use facts::MotoFacts;

use crate::injector::{AwsError, RequestInfo};

/// A principal the enforcement knows: a role of the template, assumed.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// What the tests and reports call it (`executor`, `worker task`…).
    pub label: String,
    /// The assumed-role session: `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub arn: String,
    pub role_arn: String,
    /// Its identity policies: the role's inline policies and the managed policies attached to it.
    pub policies: Vec<NamedPolicy>,
}

/// A call that IAM would have denied.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub principal: String,
    pub principal_arn: String,
    /// The API call (`ec2:CreateTags`) and the check that failed (which may be another action: a launch passes
    /// a role).
    pub call: String,
    pub action: String,
    pub resource: String,
    pub context: Map<String, Value>,
    /// Which statements name the action and what in them did not match.
    pub reason: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) calling {}: {} on {} is denied",
            self.principal, self.principal_arn, self.call, self.action, self.resource
        )?;
        if !self.context.is_empty() {
            write!(f, " with context {}", Value::Object(self.context.clone()))?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl Denial {
    /// The error AWS answers with, in the service's own terms; the emulator's account of why follows AWS's
    /// message in brackets, so that a failure seen anywhere says which statement was missing.
    pub fn aws_error(&self, service: Option<&str>) -> AwsError {
        let message = format!(
            "User: {} is not authorized to perform: {} on resource: {} because no identity-based policy allows \
             the {} action [local IAM enforcement: {}]",
            self.principal_arn, self.action, self.resource, self.action, self.reason
        );
        match service {
            Some("ec2") => AwsError::new(
                403,
                "UnauthorizedOperation",
                format!("You are not authorized to perform this operation. {message}"),
            ),
            Some("sqs" | "s3" | "sts" | "iam") => AwsError::new(403, "AccessDenied", message),
            _ => AwsError::new(400, "AccessDeniedException", message),
        }
    }
}

#[derive(Debug)]
struct Inner {
    principals: RwLock<HashMap<String, Arc<Principal>>>,
    evaluator: OnceLock<Result<Evaluator, String>>,
    verdicts: Mutex<HashMap<String, Verdict>>,
    denials: Mutex<Vec<Denial>>,
    facts: MotoFacts,
}

/// The enforcement: which access keys belong to which principal, and what they were denied.
#[derive(Debug, Clone)]
pub struct Iam(Arc<Inner>);

const VERDICT_CACHE_LIMIT: usize = 50_000;

impl Iam {
    pub(crate) fn new(moto_port: u16) -> Self {
        Self(Arc::new(Inner {
            principals: RwLock::default(),
            evaluator: OnceLock::new(),
            verdicts: Mutex::default(),
            denials: Mutex::default(),
            facts: MotoFacts::new(moto_port),
        }))
    }

    /// Makes requests signed with `access_key` act as `principal`, enforced. Starts the evaluator on first use.
    pub(crate) fn register(&self, access_key: &str, principal: Principal) -> Result<(), crate::Error> {
        if let Err(e) = self.evaluator() {
            return Err(crate::Error::Tools(e.clone()));
        }
        self.0.principals.write().unwrap_or_else(|p| p.into_inner()).insert(access_key.to_owned(), Arc::new(principal));
        Ok(())
    }

    fn evaluator(&self) -> &Result<Evaluator, String> {
        self.0.evaluator.get_or_init(|| Evaluator::start().map_err(|e| e.to_string()))
    }

    /// The principal an access key belongs to, if it is enforced.
    pub fn principal(&self, access_key: &str) -> Option<Arc<Principal>> {
        self.0.principals.read().unwrap_or_else(|p| p.into_inner()).get(access_key).cloned()
    }

    /// Authorizes a request as AWS would; requests of keys that are not enforced pass.
    pub(crate) async fn authorize(&self, info: &RequestInfo) -> Result<(), Box<Denial>> {
        let Some(principal) = info.access_key.as_deref().and_then(|key| self.principal(key)) else { return Ok(()) };
        let call =
            format!("{}:{}", info.service.as_deref().unwrap_or("unknown"), info.action.as_deref().unwrap_or("unknown"));
        let checks = calls::checks(info, &self.0.facts).await;
        self.decide(&principal, &call, checks).await
    }

    /// Authorizes `checks` for the principal of `access_key` (for doors the emulator does not proxy, such as
    /// a function URL); an unknown key is denied, as AWS denies an unsigned or unknown caller.
    pub async fn authorize_checks(&self, access_key: &str, call: &str, checks: Vec<Check>) -> Result<(), Box<Denial>> {
        let Some(principal) = self.principal(access_key) else {
            let denial = Denial {
                principal: "unknown".into(),
                principal_arn: format!("access key {access_key}"),
                call: call.into(),
                action: call.into(),
                resource: "*".into(),
                context: Map::new(),
                reason: "the access key belongs to no principal".into(),
            };
            return Err(Box::new(denial));
        };
        self.decide(&principal, call, checks).await
    }

    async fn decide(&self, principal: &Principal, call: &str, checks: Vec<Check>) -> Result<(), Box<Denial>> {
        for check in checks {
            let verdict = match &check.unmodelled {
                Some(why) => Verdict { decision: Decision::Invalid, explain: format!("not modelled: {why}") },
                None => self.verdict(principal, &check).await,
            };
            if verdict.decision != Decision::Allowed {
                let reason = match verdict.decision {
                    Decision::Invalid => format!("the evaluator cannot judge this check: {}", verdict.explain),
                    _ => verdict.explain,
                };
                let denial = Denial {
                    principal: principal.label.clone(),
                    principal_arn: principal.arn.clone(),
                    call: call.to_owned(),
                    action: check.action,
                    resource: check.resource,
                    context: check.context,
                    reason,
                };
                // On stderr as well as in the log: a test shows it beside its failure.
                eprintln!("localaws IAM: {denial}");
                tracing::warn!(%denial, "IAM would deny this call");
                self.0.denials.lock().unwrap_or_else(|p| p.into_inner()).push(denial.clone());
                return Err(Box::new(denial));
            }
        }
        Ok(())
    }

    async fn verdict(&self, principal: &Principal, check: &Check) -> Verdict {
        let question = Question {
            principal: principal.arn.clone(),
            action: check.action.clone(),
            resource: check.resource.clone(),
            account: calls::ACCOUNT.to_owned(),
            context: check.context.clone(),
            identity_policies: principal.policies.clone(),
            resource_policy: check.resource_policy.clone(),
        };
        let key = serde_json::to_string(&question).unwrap_or_default();
        if let Some(known) = self.0.verdicts.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return known.clone();
        }
        let verdict = match self.evaluator() {
            Ok(evaluator) => evaluator.ask(&question).await,
            Err(e) => Verdict { decision: Decision::Invalid, explain: e.clone() },
        };
        let mut verdicts = self.0.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if verdicts.len() >= VERDICT_CACHE_LIMIT {
            verdicts.clear();
        }
        verdicts.insert(key, verdict.clone());
        verdict
    }

    /// Every denial so far.
    pub fn denials(&self) -> Vec<Denial> {
        self.0.denials.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every denial so far, forgotten: for a test that expects some.
    pub fn take_denials(&self) -> Vec<Denial> {
        std::mem::take(&mut *self.0.denials.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
