//! Fault rules: which requests to answer with what, how often, how late.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use super::protocol::AwsError;
use super::request::RequestInfo;

/// What a matching request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An AWS error answer, as the request's protocol writes it.
    Fail(AwsError),
    /// The emulator's own answer (useful with a delay).
    Forward,
}

/// A fault rule. Every condition set must hold; unset conditions match anything.
///
/// ```
/// use gameforge_localaws::{AwsError, Rule};
///
/// let shortage = Rule::for_service("ec2")
///     .action("RunInstances")
///     .instance_type("g5.xlarge")
///     .availability_zone("us-east-1a")
///     .fail(AwsError::insufficient_instance_capacity("g5.xlarge", "us-east-1a", &["us-east-1b"]));
/// let flaky_table = Rule::for_service("dynamodb").action("PutItem").times(2).throttle();
/// # let _ = (shortage, flaky_table);
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    service: Option<String>,
    action: Option<String>,
    region: Option<String>,
    params: Vec<(String, String)>,
    body_contains: Vec<String>,
    skip: u32,
    times: Option<u32>,
    /// The rule applies until then (an outage of a given length).
    until: Option<std::time::Instant>,
    delay: Option<Duration>,
    answer: Answer,
}

impl Rule {
    /// A rule for one service, by its SigV4 signing name (`ec2`, `sqs`, `dynamodb`, `events`, `s3`…).
    pub fn for_service(service: &str) -> Self {
        Self { service: Some(service.to_owned()), ..Self::any() }
    }

    /// A rule for every request.
    pub fn any() -> Self {
        Self {
            service: None,
            action: None,
            region: None,
            params: Vec::new(),
            body_contains: Vec::new(),
            skip: 0,
            times: None,
            until: None,
            delay: None,
            answer: Answer::Forward,
        }
    }

    pub fn action(mut self, action: &str) -> Self {
        self.action = Some(action.to_owned());
        self
    }

    /// The region the request is signed for.
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    /// A request parameter, matched on its last name segment (`InstanceType` matches
    /// `LaunchTemplateConfigs.1.Overrides.1.InstanceType`).
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn instance_type(self, instance_type: &str) -> Self {
        self.param("InstanceType", instance_type)
    }

    pub fn availability_zone(self, zone: &str) -> Self {
        self.param("AvailabilityZone", zone)
    }

    pub fn body_contains(mut self, text: &str) -> Self {
        self.body_contains.push(text.to_owned());
        self
    }

    /// Lets the first `n` matching requests through untouched.
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Applies to at most `n` requests, then lets the rest through.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Applies for `length` from now, and never after: an outage.
    pub fn during(mut self, length: Duration) -> Self {
        self.until = Some(std::time::Instant::now() + length);
        self
    }

    /// Holds the answer back for `delay`, as a slow or hung service would.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn fail(mut self, error: AwsError) -> Self {
        self.answer = Answer::Fail(error);
        self
    }

    /// Answers throttling with the code `service` really uses.
    pub fn throttle(self) -> Self {
        let error = AwsError::throttling(self.service.as_deref().unwrap_or_default());
        self.fail(error)
    }

    fn matches(&self, request: &RequestInfo) -> bool {
        let same = |want: &Option<String>, got: &Option<String>| {
            want.as_ref().is_none_or(|w| got.as_ref().is_some_and(|g| g.eq_ignore_ascii_case(w)))
        };
        self.until.is_none_or(|until| std::time::Instant::now() < until)
            && same(&self.service, &request.service)
            && same(&self.action, &request.action)
            && same(&self.region, &request.region)
            && self.params.iter().all(|(name, value)| request.param_values(name).any(|v| v == value))
            && self.body_contains.iter().all(|text| String::from_utf8_lossy(&request.body).contains(text.as_str()))
    }
}

/// Counts of one installed rule.
#[derive(Debug, Clone, Default)]
pub struct RuleHandle {
    seen: Arc<AtomicU32>,
    applied: Arc<AtomicU32>,
    ended: Arc<AtomicBool>,
}

impl RuleHandle {
    /// Requests the rule answered (its fault was applied).
    pub fn hits(&self) -> u32 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Requests that matched the rule's conditions, applied or not.
    pub fn matched(&self) -> u32 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Ends the rule now, whatever answers it has left: a run that has stopped throwing faults must not have
    /// its own checks answered by a burst still waiting for requests.
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub(super) struct Installed {
    rule: Rule,
    handle: RuleHandle,
}

/// What to do with a request: the first installed rule that matches and is not used up decides.
#[derive(Debug, Default)]
pub(super) struct RuleSet {
    rules: Vec<Installed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Effect {
    pub delay: Option<Duration>,
    pub answer: Answer,
}

impl RuleSet {
    pub fn add(&mut self, rule: Rule) -> RuleHandle {
        let handle = RuleHandle::default();
        self.rules.push(Installed { rule, handle: handle.clone() });
        handle
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn decide(&self, request: &RequestInfo) -> Option<Effect> {
        for installed in &self.rules {
            if installed.handle.ended.load(Ordering::SeqCst) || !installed.rule.matches(request) {
                continue;
            }
            let seen = installed.handle.seen.fetch_add(1, Ordering::SeqCst) + 1;
            if seen <= installed.rule.skip {
                return None;
            }
            if installed.rule.times.is_some_and(|times| installed.handle.applied.load(Ordering::SeqCst) >= times) {
                continue;
            }
            installed.handle.applied.fetch_add(1, Ordering::SeqCst);
            return Some(Effect { delay: installed.rule.delay, answer: installed.rule.answer.clone() });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::injector::request::Protocol;

    fn request(action: &str, params: &[(&str, &str)]) -> RequestInfo {
        RequestInfo {
            service: Some("ec2".into()),
            region: Some("us-east-1".into()),
            action: Some(action.into()),
            protocol: Protocol::Ec2Query,
            params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            body: bytes::Bytes::new(),
            access_key: None,
            s3_target: None,
        }
    }

    #[test]
    fn matches_on_every_condition() {
        let mut rules = RuleSet::default();
        let handle = rules.add(
            Rule::for_service("ec2")
                .action("RunInstances")
                .region("us-east-1")
                .instance_type("g5.xlarge")
                .availability_zone("us-east-1a")
                .fail(AwsError::insufficient_instance_capacity("g5.xlarge", "us-east-1a", &[])),
        );
        let hit =
            request("RunInstances", &[("InstanceType", "g5.xlarge"), ("Placement.AvailabilityZone", "us-east-1a")]);
        let other_zone =
            request("RunInstances", &[("InstanceType", "g5.xlarge"), ("Placement.AvailabilityZone", "us-east-1b")]);
        let other_action = request("DescribeInstances", &[("InstanceType", "g5.xlarge")]);
        assert!(rules.decide(&hit).is_some());
        assert!(rules.decide(&other_zone).is_none());
        assert!(rules.decide(&other_action).is_none());
        assert_eq!(handle.hits(), 1);
    }

    #[test]
    fn counts_skip_and_limit() {
        let mut rules = RuleSet::default();
        let handle = rules.add(Rule::for_service("ec2").after(1).times(2).fail(AwsError::request_limit_exceeded()));
        let outcomes: Vec<bool> = (0..5).map(|_| rules.decide(&request("RunInstances", &[])).is_some()).collect();
        assert_eq!(outcomes, vec![false, true, true, false, false]);
        assert_eq!((handle.hits(), handle.matched()), (2, 5));
    }

    #[test]
    fn a_used_up_rule_gives_way_to_the_next() {
        let mut rules = RuleSet::default();
        rules.add(Rule::for_service("ec2").times(1).fail(AwsError::request_limit_exceeded()));
        rules.add(Rule::for_service("ec2").fail(AwsError::internal_error()));
        let codes: Vec<String> = (0..2)
            .map(|_| match rules.decide(&request("RunInstances", &[])).unwrap().answer {
                Answer::Fail(e) => e.code,
                Answer::Forward => "forward".into(),
            })
            .collect();
        assert_eq!(codes, vec!["RequestLimitExceeded", "InternalFailure"]);
    }

    #[test]
    fn an_ended_rule_answers_nothing_more_and_keeps_its_counts() {
        let mut rules = RuleSet::default();
        let handle = rules.add(Rule::for_service("ec2").times(5).fail(AwsError::internal_error()));
        assert!(rules.decide(&request("RunInstances", &[])).is_some());
        handle.end();
        assert!(rules.decide(&request("RunInstances", &[])).is_none());
        assert_eq!((handle.hits(), handle.matched()), (1, 1));
    }

    #[test]
    fn an_outage_ends_when_its_time_is_up() {
        let mut rules = RuleSet::default();
        rules.add(Rule::for_service("ec2").during(Duration::from_millis(150)).fail(AwsError::service_unavailable()));
        assert!(rules.decide(&request("RunInstances", &[])).is_some());
        std::thread::sleep(Duration::from_millis(200));
        assert!(rules.decide(&request("RunInstances", &[])).is_none());
    }
}
