//! The job queue's sending edge, and the one place a job's queue is chosen.

use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::MessageAttributeValue;
use gameforge_aws::PortError;
use gameforge_aws::env::EnvReader;
use gameforge_contract::{GenerationJob, Message};
use gameforge_planner::cpu_tier::{CpuTier, Route, route};

use crate::clients::sqs_for_queue;
use crate::{OWNER_ATTRIBUTE, Owner};

pub trait JobSender: Send + Sync + 'static {
    /// Enqueues `job`, and says which queue it went to and why.
    fn send(&self, job: &GenerationJob, owner: &Owner) -> impl Future<Output = Result<Route, PortError>> + Send;
}

/// The CPU tier as submission sees it: the rule that says which jobs it could serve, and the queue they go to.
#[derive(Debug, Clone, PartialEq)]
pub struct AnyTier {
    /// `GAMEFORGE_ANY_TIER_QUEUE_URL`.
    pub queue_url: String,
    /// `GAMEFORGE_CPU_TIER`: the fleet file's `cpu_tier` section (the stack's `CpuTier` parameter).
    pub tier: Box<CpuTier>,
}

impl AnyTier {
    /// From `GAMEFORGE_CPU_TIER` and `GAMEFORGE_ANY_TIER_QUEUE_URL`. The tier decides: without it there is no
    /// routing, and the any-tier queue's URL alone (every stack has the queue) is not used.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> Option<Self> {
        let tier = env.optional("GAMEFORGE_CPU_TIER").filter(|t| !t.trim().is_empty())?;
        let queue_url = env.optional("GAMEFORGE_ANY_TIER_QUEUE_URL").filter(|u| !u.trim().is_empty());
        match (CpuTier::from_json(&tier), queue_url) {
            (Ok(tier), Some(queue_url)) => Some(Self { queue_url, tier: Box::new(tier) }),
            (Ok(_), None) => {
                env.problem("GAMEFORGE_CPU_TIER needs GAMEFORGE_ANY_TIER_QUEUE_URL, the queue its jobs go to");
                None
            }
            (Err(e), _) => {
                env.problem(format!("GAMEFORGE_CPU_TIER: {e}"));
                None
            }
        }
    }
}

/// Sends jobs to the SQS job queue, the job id also as a message attribute so that queue tooling can find a job
/// without parsing bodies, and the owner as another, which tells the worker whose job it is. With a CPU tier, a
/// job the tier could serve goes to the any-tier queue instead ([`route`]), decided here for every way in (the
/// client library and the submit function alike).
#[derive(Debug, Clone)]
pub struct SqsJobSender {
    gpu_only: Lane,
    any_tier: Option<(Lane, Box<CpuTier>)>,
}

#[derive(Debug, Clone)]
struct Lane {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobSender {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { gpu_only: Lane { client, queue_url: queue_url.into() }, any_tier: None }
    }

    /// The deployment's job queue and, where it has a CPU tier, the any-tier queue; each queue's client is of
    /// the queue's own region.
    pub fn for_deployment(config: &SdkConfig, job_queue_url: &str, any_tier: Option<&AnyTier>) -> Self {
        let lane = |url: &str| Lane { client: sqs_for_queue(config, url), queue_url: url.to_owned() };
        Self { gpu_only: lane(job_queue_url), any_tier: any_tier.map(|a| (lane(&a.queue_url), a.tier.clone())) }
    }

    fn lane_for(&self, job: &GenerationJob) -> (&Lane, Route) {
        let tier = self.any_tier.as_ref().map(|(_, tier)| tier.as_ref());
        let route = route(tier, job, chrono::Utc::now());
        match (&route, &self.any_tier) {
            (Route::AnyTier, Some((lane, _))) => (lane, route),
            _ => (&self.gpu_only, route),
        }
    }
}

impl JobSender for SqsJobSender {
    async fn send(&self, job: &GenerationJob, owner: &Owner) -> Result<Route, PortError> {
        let text = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PortError::new("SendMessage job", e))
        };
        let (lane, route) = self.lane_for(job);
        lane.client
            .send_message()
            .queue_url(&lane.queue_url)
            .message_body(job.to_json())
            .message_attributes("job_id", text(&job.job_id)?)
            .message_attributes(OWNER_ATTRIBUTE, text(owner.as_str())?)
            .send()
            .await
            .map_err(|e| PortError::sdk("SendMessage job", &e))?;
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIER: &str = r#"{"ecs_service": "cpu", "vcpus": 16, "memory_gib": 60, "price_per_hour": 0.91,
        "pace": {"step_seconds_per_megapixel": 8.0, "decode_seconds_per_megapixel": 22.0, "job_seconds": 2.0},
        "budget": {"max_megapixel_evaluations": 2.2, "max_megapixels": 0.27},
        "enter": {"oldest_job_waited": "10m", "leave_after": "5m"}, "max_workers": 4, "target_backlog_per_worker": 8}"#;

    fn read(vars: &[(&str, &str)]) -> Result<Option<AnyTier>, String> {
        let mut env = EnvReader::new(|name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()));
        let any_tier = AnyTier::from_env(&mut env);
        env.finish().map(|()| any_tier).map_err(|e| e.to_string())
    }

    #[test]
    fn the_tier_decides_whether_jobs_are_routed_and_needs_its_queue() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("GAMEFORGE_ANY_TIER_QUEUE_URL", "https://q")]), Ok(None), "the queue alone routes nothing");
        let routed = read(&[("GAMEFORGE_CPU_TIER", TIER), ("GAMEFORGE_ANY_TIER_QUEUE_URL", "https://q")]);
        assert_eq!(routed.unwrap().unwrap().queue_url, "https://q");
        let err = read(&[("GAMEFORGE_CPU_TIER", TIER)]).unwrap_err();
        assert!(err.contains("needs GAMEFORGE_ANY_TIER_QUEUE_URL"), "{err}");
        let broken = TIER.replace("\"vcpus\": 16", "\"vcpus\": 64");
        let err = read(&[("GAMEFORGE_CPU_TIER", &broken), ("GAMEFORGE_ANY_TIER_QUEUE_URL", "https://q")]).unwrap_err();
        assert!(err.contains("cpu_tier.vcpus"), "{err}");
        let err = read(&[("GAMEFORGE_CPU_TIER", "{"), ("GAMEFORGE_ANY_TIER_QUEUE_URL", "https://q")]).unwrap_err();
        assert!(err.contains("GAMEFORGE_CPU_TIER: fleet configuration is not valid JSON: cpu_tier"), "{err}");
    }
}
