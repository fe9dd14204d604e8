//! What to do with a delivered message before any model runs: run it, answer it without running (rejected,
//! deadline passed, wrong model, poison), hand it to the GPUs (a CPU worker's job it cannot serve), or set it
//! aside when it cannot even be answered. Pure.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gameforge_contract::{
    CONTRACT_VERSION, ErrorClass, GenerationJob, JobFailure, JobResult, JobStatus, Message, Placement, Tier, Timings,
};
use gameforge_jobs::{JobKey, Owner};
use gameforge_planner::cpu_tier::{CpuTier, GpuOnly, cpu_can_finish};
use serde_json::Value;

use crate::pipeline::GenerateRequest;
use crate::scheduler::SchedulerKind;

/// One delivery of a job message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
    /// Whose job it is (the message's owner attribute, set by the submitter); `None` for a job sent without the
    /// library.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Run {
        key: JobKey,
        job: Box<GenerationJob>,
    },
    /// Answer with this result and remove the message; `dead_letter` moves it to the DLQ with that reason. The
    /// answer is about `job` (`None` when the message is not a valid job); the status store takes it only where
    /// no other delivery runs the job.
    Answer {
        key: JobKey,
        job: Option<Box<GenerationJob>>,
        result: Box<JobResult>,
        reply_to: Option<String>,
        dead_letter: Option<String>,
    },
    /// Nothing to answer to (no usable job id): to the DLQ with the reason.
    DeadLetter {
        reason: String,
    },
    /// A CPU worker cannot serve it (too large for the tier, or no longer in time at its pace): to the GPU-only
    /// queue, which no CPU worker reads.
    ToGpu {
        key: JobKey,
        job_id: String,
        reason: GpuOnly,
    },
}

/// What the worker knows about itself when judging.
#[derive(Debug, Clone)]
pub struct Judge {
    pub model_id: String,
    /// The queue's `maxReceiveCount`: the delivery that reaches it is the job's last, and is not run.
    pub max_receives: Option<u32>,
    pub placement: Option<Placement>,
    /// Set on a CPU worker: the tier whose budget and measured pace it judges jobs by.
    pub cpu_tier: Option<CpuTier>,
}

impl Judge {
    pub fn tier(&self) -> Tier {
        if self.cpu_tier.is_some() { Tier::Cpu } else { Tier::Gpu }
    }

    pub fn judge(&self, delivery: &Delivery, now: DateTime<Utc>) -> Verdict {
        let owner = match delivery.owner.as_deref().map(Owner::from_arn).transpose() {
            Ok(owner) => owner,
            Err(e) => return Verdict::DeadLetter { reason: format!("the message's owner attribute is invalid: {e}") },
        };
        let job = match GenerationJob::from_json(delivery.body.as_bytes()) {
            Ok(job) => job,
            Err(e) => {
                let lenient: Value = serde_json::from_str(&delivery.body).unwrap_or(Value::Null);
                let job_id = lenient.get("job_id").and_then(Value::as_str).filter(|id| valid_job_id(id));
                return match job_id {
                    Some(id) => Verdict::Answer {
                        key: JobKey::new(owner, id),
                        job: None,
                        result: Box::new(self.rejection(id, &lenient, delivery, now, e.to_string())),
                        reply_to: lenient
                            .get("reply_to")
                            .and_then(Value::as_str)
                            .filter(|u| u.starts_with("http"))
                            .map(str::to_string),
                        dead_letter: None,
                    },
                    None => {
                        Verdict::DeadLetter { reason: format!("not a generation job, and no job id to answer to: {e}") }
                    }
                };
            }
        };
        let key = JobKey::new(owner, &job.job_id);
        // A job that will not run is answered `failed` without touching the model.
        let fail = |class: ErrorClass, message: String, dead_letter: bool| Verdict::Answer {
            key: key.clone(),
            job: Some(Box::new(job.clone())),
            result: Box::new(self.result(&job, delivery, now, JobStatus::Failed, class, message.clone())),
            reply_to: job.reply_to.clone(),
            dead_letter: dead_letter.then_some(message),
        };
        if let Some(max) = self.max_receives
            && delivery.receive_count >= max
        {
            let message = format!(
                "delivered {} times without finishing: the job crashed or outlived every worker that took it",
                delivery.receive_count
            );
            return fail(ErrorClass::Poison, message, true);
        }
        if job.model_id != self.model_id {
            let message = format!("this worker serves {:?}, not {:?}", self.model_id, job.model_id);
            return fail(ErrorClass::UnsupportedModel, message, false);
        }
        if let Some(deadline) = job.deadline
            && deadline <= now
        {
            let message = format!("the deadline {deadline} passed before a worker started the job");
            return fail(ErrorClass::DeadlineExceeded, message, false);
        }
        if let Some(tier) = &self.cpu_tier
            && let Err(reason) = tier.admits(&job).and_then(|()| cpu_can_finish(tier, &job, now))
        {
            return Verdict::ToGpu { key, job_id: job.job_id, reason };
        }
        Verdict::Run { key, job: Box::new(job) }
    }

    /// A final result for a job that did not succeed.
    pub fn result(
        &self,
        job: &GenerationJob,
        delivery: &Delivery,
        now: DateTime<Utc>,
        status: JobStatus,
        class: ErrorClass,
        message: String,
    ) -> JobResult {
        let known = Known {
            job_id: job.job_id.clone(),
            submitted_at: job.submitted_at.min(now),
            labels: job.labels.clone(),
            seed: job.seed,
            placement: self.placement.clone(),
            tier: self.tier(),
        };
        unsuccessful(known, delivery, now, status, JobFailure { class, message: truncate(message) })
    }

    /// The `rejected` answer to a message that is not a valid job but names one, from what can be read of it.
    fn rejection(
        &self,
        job_id: &str,
        lenient: &Value,
        delivery: &Delivery,
        now: DateTime<Utc>,
        message: String,
    ) -> JobResult {
        let submitted_at = lenient
            .get("submitted_at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .filter(|d| *d <= now)
            .unwrap_or(now);
        let labels: BTreeMap<String, String> = lenient
            .get("labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).take(16).collect())
            .unwrap_or_default();
        let known =
            Known { job_id: job_id.to_string(), submitted_at, labels, seed: None, placement: None, tier: self.tier() };
        let failure = JobFailure { class: ErrorClass::InvalidJob, message: truncate(message) };
        unsuccessful(known, delivery, now, JobStatus::Rejected, failure)
    }
}

/// What is known of a job whose result is not a success.
struct Known {
    job_id: String,
    submitted_at: DateTime<Utc>,
    labels: BTreeMap<String, String>,
    seed: Option<u64>,
    placement: Option<Placement>,
    tier: Tier,
}

fn unsuccessful(
    known: Known,
    delivery: &Delivery,
    now: DateTime<Utc>,
    status: JobStatus,
    error: JobFailure,
) -> JobResult {
    JobResult {
        version: CONTRACT_VERSION,
        job_id: known.job_id,
        status,
        image: None,
        error: Some(error),
        timings: Timings {
            submitted_at: known.submitted_at,
            started_at: None,
            finished_at: now,
            queue_wait_ms: None,
            generation_ms: None,
        },
        placement: known.placement,
        tier: Some(known.tier),
        seed: known.seed,
        prompt_truncated: false,
        attempt: delivery.receive_count.max(1),
        labels: known.labels,
    }
}

fn valid_job_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && id.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn truncate(mut message: String) -> String {
    if message.len() > 4000 {
        let mut cut = 4000;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

/// The pipeline request for a job; `seed` is the job's or the one the worker picked.
pub fn request_for(job: &GenerationJob, seed: u64) -> GenerateRequest {
    GenerateRequest {
        prompt: job.prompt.clone(),
        negative_prompt: job.negative_prompt.clone(),
        width: job.width as usize,
        height: job.height as usize,
        steps: job.steps as usize,
        guidance: job.guidance,
        seed,
        scheduler: Some(match job.scheduler {
            gameforge_contract::Scheduler::Euler => SchedulerKind::Euler,
            gameforge_contract::Scheduler::EulerA => SchedulerKind::EulerAncestral,
            gameforge_contract::Scheduler::Ddim => SchedulerKind::Ddim,
        }),
        latents: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gameforge_contract::S3Uri;

    fn judge() -> Judge {
        Judge { model_id: "tiny".into(), max_receives: Some(3), placement: None, cpu_tier: None }
    }

    fn delivery(body: String, receive_count: u32) -> Delivery {
        Delivery { message_id: "m".into(), receipt: "r".into(), body, receive_count, owner: None }
    }

    fn job() -> GenerationJob {
        let mut job = GenerationJob::new("job-1", "a castle", "tiny", S3Uri::parse("s3://out/images").unwrap());
        job.reply_to = Some("http://localhost/123/replies".into());
        job
    }

    #[test]
    fn a_valid_job_runs_under_its_owners_key() {
        let now = Utc::now();
        let mut owned = delivery(job().to_json(), 1);
        owned.owner = Some("arn:aws:sts::123456789012:assumed-role/game-backend".into());
        let Verdict::Run { key, .. } = judge().judge(&owned, now) else { panic!() };
        assert_eq!(key.stored(), "arn:aws:sts::123456789012:assumed-role/game-backend#job-1");
        let Verdict::Run { key, .. } = judge().judge(&delivery(job().to_json(), 1), now) else { panic!() };
        assert_eq!(key, JobKey::unowned("job-1"));
    }

    fn cpu_judge() -> Judge {
        let tier = serde_json::from_value(serde_json::json!({
            "ecs_service": "cpu", "vcpus": 16, "memory_gib": 60, "price_per_hour": 0.91,
            "pace": {"step_seconds_per_megapixel": 8.0, "decode_seconds_per_megapixel": 22.0, "job_seconds": 2.0},
            "budget": {"max_megapixel_evaluations": 2.2, "max_megapixels": 0.27},
            "enter": {"oldest_job_waited": "10m", "leave_after": "5m"},
            "max_workers": 4, "target_backlog_per_worker": 8
        }))
        .unwrap();
        Judge { cpu_tier: Some(tier), ..judge() }
    }

    #[test]
    fn a_cpu_worker_runs_what_it_can_finish_and_hands_the_rest_to_the_gpus() {
        let now = Utc::now();
        let mut small = job();
        (small.width, small.height, small.steps, small.guidance) = (512, 512, 4, 0.0);
        // 2 + 22 × 0.262 + 8 × 1.05 = 16.2 s at the tier's pace.
        small.deadline = Some(now + chrono::Duration::seconds(60));
        assert!(matches!(cpu_judge().judge(&delivery(small.to_json(), 1), now), Verdict::Run { .. }));
        assert!(matches!(judge().judge(&delivery(small.to_json(), 1), now), Verdict::Run { .. }));

        small.deadline = Some(now + chrono::Duration::seconds(10));
        let verdict = cpu_judge().judge(&delivery(small.to_json(), 1), now);
        assert!(
            matches!(&verdict, Verdict::ToGpu { job_id, reason: GpuOnly::Deadline { .. }, .. } if job_id == "job-1"),
            "{verdict:?}"
        );
        // A job that reached the any-tier queue by a stale rule is over the budget: also the GPUs'.
        let verdict = cpu_judge().judge(&delivery(job().to_json(), 1), now);
        assert!(matches!(&verdict, Verdict::ToGpu { reason: GpuOnly::Size { .. }, .. }), "{verdict:?}");
        // Answers name the tier that gave them.
        let Verdict::Answer { result, .. } = cpu_judge().judge(&delivery("{\"job_id\": \"j\"}".into(), 1), now) else {
            panic!()
        };
        assert_eq!(result.tier, Some(Tier::Cpu));
    }

    #[test]
    fn a_message_with_an_invalid_owner_goes_to_the_dead_letter_queue() {
        let mut forged = delivery(job().to_json(), 1);
        forged.owner = Some("victim#job-1".into());
        let verdict = judge().judge(&forged, Utc::now());
        assert!(matches!(&verdict, Verdict::DeadLetter { reason } if reason.contains("owner")), "{verdict:?}");
    }

    #[test]
    fn an_invalid_job_with_an_id_is_rejected_with_every_violation() {
        let mut value = serde_json::to_value(job()).unwrap();
        value["width"] = 63.into();
        value["steps"] = 0.into();
        let verdict = judge().judge(&delivery(value.to_string(), 1), Utc::now());
        let Verdict::Answer { result, reply_to, dead_letter, job, .. } = verdict else { panic!("{verdict:?}") };
        assert_eq!(job, None, "an invalid job carries no request to answer for");
        assert_eq!(result.status, JobStatus::Rejected);
        let message = &result.error.as_ref().unwrap().message;
        assert!(message.contains("width") && message.contains("steps"), "{message}");
        assert_eq!(reply_to.as_deref(), Some("http://localhost/123/replies"));
        assert_eq!(dead_letter, None);
        result.validate().unwrap();
    }

    #[test]
    fn garbage_goes_to_the_dead_letter_queue() {
        let verdict = judge().judge(&delivery("not json".into(), 1), Utc::now());
        assert!(matches!(verdict, Verdict::DeadLetter { .. }));
        let verdict = judge().judge(&delivery(r#"{"job_id": "../x"}"#.into(), 1), Utc::now());
        assert!(matches!(verdict, Verdict::DeadLetter { .. }));
    }

    #[test]
    fn the_last_delivery_is_answered_as_poison_and_dead_lettered() {
        let verdict = judge().judge(&delivery(job().to_json(), 3), Utc::now());
        let Verdict::Answer { result, dead_letter, .. } = verdict else { panic!() };
        assert_eq!(result.error.unwrap().class, ErrorClass::Poison);
        assert_eq!(result.attempt, 3);
        assert!(dead_letter.is_some());
    }

    #[test]
    fn wrong_model_and_passed_deadline_fail_without_running() {
        let mut other = job();
        other.model_id = "sdxl-base".into();
        let Verdict::Answer { result, .. } = judge().judge(&delivery(other.to_json(), 1), Utc::now()) else { panic!() };
        assert_eq!(result.error.unwrap().class, ErrorClass::UnsupportedModel);
        let mut late = job();
        late.deadline = Some(late.submitted_at + chrono::Duration::seconds(1));
        let now = late.submitted_at + chrono::Duration::seconds(2);
        let Verdict::Answer { result, .. } = judge().judge(&delivery(late.to_json(), 1), now) else { panic!() };
        assert_eq!(result.error.unwrap().class, ErrorClass::DeadlineExceeded);
    }
}
