//! The status store and submission against the emulator: every transition a job's life needs, idempotent
//! submission, conflicts, races between a cancellation and a claim, AWS throttling on the way, final results
//! that only the claim's holder (or nobody's claim) may write, owners that never see each other's jobs, and
//! reply queues that must be the deployment's.

use std::time::Duration;

use gameforge_contract::{
    CapacityType, ErrorClass, GenerationJob, JobResult, JobState, Message, Placement, Progress, S3Uri,
};
use gameforge_jobs::{
    CancelOutcome, Claim, Client, ClientSettings, DynamoJobStore, Finish, JobKey, JobStore, OWNER_ATTRIBUTE, Owner,
    ProgressAnswer, ReplyToError, ResultInbox, SqsJobSender, SqsReplyQueues, SubmitError, Submitted, cancelled_result,
    submit,
};
use gameforge_localaws::{Deployment, Emulator, Rule, queue_depth};

struct Rig {
    emulator: Emulator,
    deployment: Deployment,
    store: DynamoJobStore,
    sender: SqsJobSender,
    replies: SqsReplyQueues,
    /// The account's own access: what the test sets up (as the backend's operator) and inspects.
    config: aws_config::SdkConfig,
    /// The game backend: a role with the template's GameBackendPolicy, enforced. The store, the sender and the
    /// reply-queue check act with it.
    backend: aws_config::SdkConfig,
    owner: Owner,
}

async fn rig() -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let backend = backend(&emulator, &deployment, "game-backend").await;
    let store =
        DynamoJobStore::new(aws_sdk_dynamodb::Client::new(&backend), &deployment.jobs_table, Duration::from_secs(3600));
    let sender = SqsJobSender::new(aws_sdk_sqs::Client::new(&backend), &deployment.job_queue_url);
    let replies = SqsReplyQueues::new(&backend, &deployment.job_queue_url);
    let owner = Owner::from_arn("arn:aws:iam::123456789012:role/game-backend").unwrap();
    Rig { emulator, deployment, store, sender, replies, config, backend, owner }
}

/// A game backend's role (`name`) with the template's GameBackendPolicy, assumed.
async fn backend(emulator: &Emulator, deployment: &Deployment, name: &str) -> aws_config::SdkConfig {
    let policy = deployment.outputs["GameBackendPolicyArn"].clone();
    let role = emulator.role_with_policies(name, &[&policy]).await.unwrap();
    emulator.sdk_config_as(&role, "us-east-1").await
}

fn job(id: &str) -> GenerationJob {
    let mut job = GenerationJob::new(id, "a castle on a hill", "tiny", S3Uri::parse("s3://images/out").unwrap());
    job.width = 64;
    job.height = 64;
    job.steps = 4;
    job
}

fn placement() -> Placement {
    Placement {
        region: "us-east-1".into(),
        availability_zone: "us-east-1a".into(),
        instance_type: "g5.xlarge".into(),
        capacity_type: CapacityType::Spot,
        instance_id: "i-0123456789abcdef0".into(),
    }
}

impl Rig {
    async fn depth(&self) -> usize {
        queue_depth(&self.config, &self.deployment.job_queue_url).await.unwrap()
    }

    fn key(&self, id: &str) -> JobKey {
        JobKey::owned(&self.owner, id)
    }

    async fn state(&self, id: &str) -> JobState {
        self.store.get(&self.key(id)).await.unwrap().unwrap().state
    }

    async fn submit(&self, job: &GenerationJob) -> Result<Submitted, SubmitError> {
        submit(&self.store, &self.sender, &self.replies, job, &self.owner).await
    }

    /// A queue, tagged `gameforge:reply-to` with `tag` when given.
    async fn queue(&self, name: &str, tag: Option<&str>) -> String {
        let mut create = aws_sdk_sqs::Client::new(&self.config).create_queue().queue_name(name);
        if let Some(tag) = tag {
            create = create.tags("gameforge:reply-to", tag);
        }
        create.send().await.unwrap().queue_url().unwrap().to_string()
    }
}

/// A failed result, as a worker answers a job it does not run.
fn failed(job: &GenerationJob, class: ErrorClass) -> JobResult {
    let result = cancelled_result(&job.job_id, Some(job), chrono::Utc::now());
    JobResult {
        error: Some(gameforge_contract::JobFailure { class, message: format!("{class:?}") }),
        attempt: 1,
        ..result
    }
}

fn succeeded(job: &GenerationJob) -> JobResult {
    let result = cancelled_result(&job.job_id, Some(job), chrono::Utc::now());
    JobResult {
        status: gameforge_contract::JobStatus::Succeeded,
        image: Some(job.image_location()),
        error: None,
        attempt: 1,
        ..result
    }
}

#[tokio::test]
async fn a_job_id_is_submitted_once_and_a_different_request_under_it_is_a_conflict() {
    let rig = rig().await;
    let first = job("idem-1");
    assert_eq!(rig.submit(&first).await.unwrap(), Submitted::New);
    assert_eq!(rig.state("idem-1").await, JobState::Queued);
    assert_eq!(rig.depth().await, 1);

    // The same request rebuilt later (a retry after a timeout) is the same job: nothing new is enqueued.
    let mut again = job("idem-1");
    again.submitted_at += chrono::Duration::seconds(5);
    let Submitted::Existing(record) = rig.submit(&again).await.unwrap() else {
        panic!("a second submission must find the first");
    };
    assert_eq!(record.state, JobState::Queued);
    assert_eq!(rig.depth().await, 1);

    let mut other = job("idem-1");
    other.prompt = "a different castle".into();
    let error = rig.submit(&other).await.unwrap_err();
    assert!(matches!(error, SubmitError::Conflict { .. }), "{error}");
    assert_eq!(rig.depth().await, 1);
}

#[tokio::test]
async fn an_invalid_job_is_refused_with_every_violation_and_nothing_is_recorded() {
    let rig = rig().await;
    let mut bad = job("bad-1");
    bad.width = 65;
    bad.steps = 0;
    bad.prompt = " ".into();
    let error = rig.submit(&bad).await.unwrap_err();
    let fields: Vec<String> = error.violations().into_iter().map(|v| v.field).collect();
    for field in ["width", "steps", "prompt"] {
        assert!(fields.iter().any(|f| f == field), "{field} missing from {fields:?}");
    }
    assert!(rig.store.get(&rig.key("bad-1")).await.unwrap().is_none());
    assert_eq!(rig.depth().await, 0);
}

#[tokio::test]
async fn a_submission_that_died_before_sending_is_completed_by_its_retry() {
    let rig = rig().await;
    let job = job("half-1");
    rig.emulator.faults().add(
        Rule::for_service("sqs")
            .action("SendMessage")
            .fail(gameforge_localaws::AwsError::new(
                400,
                "AWS.SimpleQueueService.NonExistentQueue",
                "gone for a moment",
            ))
            .times(1),
    );
    assert!(matches!(rig.submit(&job).await, Err(SubmitError::Aws(_))));
    assert_eq!(rig.state("half-1").await, JobState::Submitted);
    assert_eq!(rig.depth().await, 0);
    assert!(matches!(rig.submit(&job).await.unwrap(), Submitted::Existing(_)));
    assert_eq!(rig.state("half-1").await, JobState::Queued);
    assert_eq!(rig.depth().await, 1);
}

#[tokio::test]
async fn a_job_handed_to_the_gpus_while_it_waits_says_why_until_a_worker_takes_it() {
    let rig = rig().await;
    let job = job("moved-1");
    rig.submit(&job).await.unwrap();
    let key = rig.key(&job.job_id);
    assert_eq!(rig.store.get(&key).await.unwrap().unwrap().report().gpu_only, None, "no tier, nothing to say");
    // The worker's role does it (a CPU worker that cannot finish the job by its deadline).
    let worker_role = rig.emulator.assume_role(&rig.deployment.role_name("worker-task"), "worker").await.unwrap();
    let worker = rig.emulator.sdk_config_as(&worker_role, "us-east-1").await;
    let store = DynamoJobStore::new(
        aws_sdk_dynamodb::Client::new(&worker),
        &rig.deployment.jobs_table,
        Duration::from_secs(3600),
    );
    store.mark_gpu_only(&key, "a CPU worker needs about 7m and the deadline is 2m away").await.unwrap();
    let report = rig.store.get(&key).await.unwrap().unwrap().report();
    assert_eq!(report.gpu_only.as_deref(), Some("a CPU worker needs about 7m and the deadline is 2m away"));
    report.validate().unwrap();
    // Once a worker runs it, the reason is history: nothing changes a running job's record.
    let Claim::Run(_) = rig.store.claim(&key, &job, "m-1", Some(&placement())).await.unwrap() else { panic!() };
    store.mark_gpu_only(&key, "late").await.unwrap();
    assert_eq!(
        rig.store.get(&key).await.unwrap().unwrap().gpu_only.as_deref(),
        Some("a CPU worker needs about 7m and the deadline is 2m away")
    );
}

#[tokio::test]
async fn a_job_moves_queued_running_final_and_its_result_is_announced_once() {
    let rig = rig().await;
    let job = job("life-1");
    rig.submit(&job).await.unwrap();

    let Claim::Run(record) = rig.store.claim(&rig.key(&job.job_id), &job, "m-1", Some(&placement())).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((record.state, record.runs_started, record.crashes()), (JobState::Running, 1, 1));
    assert_eq!(record.placement, Some(placement()));
    // A second message of the same job id finds it running and must not run it.
    assert!(matches!(rig.store.claim(&rig.key(&job.job_id), &job, "m-2", None).await.unwrap(), Claim::Busy(_)));
    assert_eq!(rig.store.progress(&rig.key("life-1"), "m-1", 2, 4).await.unwrap(), ProgressAnswer::Continue);
    assert_eq!(rig.store.progress(&rig.key("life-1"), "m-2", 2, 4).await.unwrap(), ProgressAnswer::Lost);
    let report = rig.store.get(&rig.key("life-1")).await.unwrap().unwrap().report();
    assert_eq!(report.progress, Some(Progress { step: 2, total: 4 }));
    report.validate().unwrap();

    // The worker is told to stop (a drain): the job goes back to the queue, counted as a release.
    rig.store.release(&rig.key("life-1"), "m-1").await.unwrap();
    let record = rig.store.get(&rig.key("life-1")).await.unwrap().unwrap();
    assert_eq!((record.state, record.crashes()), (JobState::Queued, 0));
    // The same message again (its worker then died): the second run is counted, the crash shows.
    let Claim::Run(_) = rig.store.claim(&rig.key(&job.job_id), &job, "m-1", None).await.unwrap() else { panic!() };
    let Claim::Run(record) = rig.store.claim(&rig.key(&job.job_id), &job, "m-1", None).await.unwrap() else { panic!() };
    assert_eq!(record.crashes(), 2);

    let result =
        JobResult { image: Some(job.image_location()), ..cancelled_result("life-1", Some(&job), chrono::Utc::now()) };
    let result = JobResult { status: gameforge_contract::JobStatus::Succeeded, error: None, attempt: 2, ..result };
    result.validate().unwrap();
    let key = rig.key("life-1");
    assert_eq!(rig.store.finish(&key, &result, Some(&job), "m-1").await.unwrap(), Finish::Recorded);
    let Finish::AlreadyFinal(record) = rig.store.finish(&key, &result, Some(&job), "m-1").await.unwrap() else {
        panic!()
    };
    assert_eq!((record.state, record.announced), (JobState::Succeeded, false));
    rig.store.mark_announced(&rig.key("life-1")).await.unwrap();
    let Claim::Final(record) = rig.store.claim(&rig.key(&job.job_id), &job, "m-3", None).await.unwrap() else {
        panic!()
    };
    assert!(record.announced);
    assert_eq!(record.result, Some(result));
    assert!(matches!(
        rig.store.cancel(&rig.key("life-1"), chrono::Utc::now()).await.unwrap(),
        CancelOutcome::AlreadyFinal(_)
    ));
}

#[tokio::test]
async fn a_cancelled_queued_job_is_never_claimed_and_a_running_one_is_asked_to_stop() {
    let rig = rig().await;
    let queued = job("cancel-1");
    rig.submit(&queued).await.unwrap();
    let CancelOutcome::Cancelled(record) = rig.store.cancel(&rig.key("cancel-1"), chrono::Utc::now()).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(record.state, JobState::Cancelled);
    assert_eq!(record.result.as_ref().unwrap().error.as_ref().unwrap().class, ErrorClass::Cancelled);
    let Claim::Final(record) = rig.store.claim(&rig.key(&queued.job_id), &queued, "m-1", None).await.unwrap() else {
        panic!()
    };
    assert!(!record.announced, "the worker that gets the message announces the cancellation");

    let running = job("cancel-2");
    rig.submit(&running).await.unwrap();
    let Claim::Run(_) = rig.store.claim(&rig.key(&running.job_id), &running, "m-2", None).await.unwrap() else {
        panic!()
    };
    assert!(matches!(
        rig.store.cancel(&rig.key("cancel-2"), chrono::Utc::now()).await.unwrap(),
        CancelOutcome::Requested(_)
    ));
    assert_eq!(rig.store.progress(&rig.key("cancel-2"), "m-2", 1, 4).await.unwrap(), ProgressAnswer::Cancel);
    assert_eq!(rig.store.cancel(&rig.key("nobody"), chrono::Utc::now()).await.unwrap(), CancelOutcome::NotFound);
}

#[tokio::test]
async fn a_plain_send_message_job_gets_a_record_when_claimed_but_an_owned_one_must_have_been_submitted() {
    let rig = rig().await;
    let plain = job("plain-1");
    let Claim::Run(record) =
        rig.store.claim(&JobKey::unowned("plain-1"), &plain, "m-1", Some(&placement())).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((record.state, record.owner.as_ref()), (JobState::Running, None));
    assert_eq!(record.job.as_ref(), Some(&plain));
    assert_eq!(record.report().submitted_at, Some(plain.submitted_at));
    assert_eq!(rig.store.get(&rig.key("plain-1")).await.unwrap(), None, "no owner sees an unowned job");

    // A message naming an owner that never submitted the id (a forged attribute) runs nothing, records nothing.
    let forged = job("plain-2");
    let Claim::Refused(reason) = rig.store.claim(&rig.key("plain-2"), &forged, "m-2", None).await.unwrap() else {
        panic!()
    };
    assert!(reason.contains("never submitted"), "{reason}");
    let answer = failed(&forged, ErrorClass::DeadlineExceeded);
    let finish = rig.store.finish(&rig.key("plain-2"), &answer, Some(&forged), "m-2").await.unwrap();
    assert!(matches!(finish, Finish::Refused(_)), "{finish:?}");
    assert_eq!(rig.store.get(&rig.key("plain-2")).await.unwrap(), None);
}

#[tokio::test]
async fn a_duplicate_delivery_never_answers_for_the_run_of_another() {
    let rig = rig().await;
    let job = job("held-1");
    rig.submit(&job).await.unwrap();
    let key = rig.key("held-1");
    let Claim::Run(_) = rig.store.claim(&key, &job, "m-1", Some(&placement())).await.unwrap() else { panic!() };
    // A second message of the job, judged past its deadline, counted as poison, or not even a valid job: each
    // answer meets the live claim of m-1 and changes nothing.
    for (answer, request) in [
        (failed(&job, ErrorClass::DeadlineExceeded), Some(&job)),
        (failed(&job, ErrorClass::Poison), Some(&job)),
        (failed(&job, ErrorClass::UnsupportedModel), Some(&job)),
        (JobResult { status: gameforge_contract::JobStatus::Rejected, ..failed(&job, ErrorClass::InvalidJob) }, None),
    ] {
        let finish = rig.store.finish(&key, &answer, request, "m-2").await.unwrap();
        let Finish::Busy(record) = finish else { panic!("{finish:?}") };
        assert_eq!(record.delivery.as_deref(), Some("m-1"));
    }
    let record = rig.store.get(&key).await.unwrap().unwrap();
    assert_eq!((record.state, record.delivery.as_deref(), record.result), (JobState::Running, Some("m-1"), None));
    assert_eq!(rig.store.progress(&key, "m-1", 1, 4).await.unwrap(), ProgressAnswer::Continue);

    // The holder's answer is the job's; later ones find it final.
    let done = succeeded(&job);
    assert_eq!(rig.store.finish(&key, &done, Some(&job), "m-1").await.unwrap(), Finish::Recorded);
    let late = rig.store.finish(&key, &failed(&job, ErrorClass::DeadlineExceeded), Some(&job), "m-2").await.unwrap();
    let Finish::AlreadyFinal(record) = late else { panic!("{late:?}") };
    assert_eq!((record.state, record.result), (JobState::Succeeded, Some(done)));
}

#[tokio::test]
async fn an_answer_without_a_claim_lands_only_where_no_delivery_holds_one_and_only_for_the_recorded_request() {
    let rig = rig().await;
    let job = job("late-1");
    rig.submit(&job).await.unwrap();
    let key = rig.key("late-1");
    // Not the recorded request (another prompt under the id), or not a valid job at all: refused, nothing written.
    let mut other = job.clone();
    other.prompt = "a moat".into();
    let claim = rig.store.claim(&key, &other, "m-9", None).await.unwrap();
    assert!(matches!(&claim, Claim::Refused(reason) if reason.contains("not the request recorded")), "{claim:?}");
    let finish = rig.store.finish(&key, &failed(&other, ErrorClass::DeadlineExceeded), Some(&other), "m-9").await;
    assert!(matches!(finish.unwrap(), Finish::Refused(_)));
    let rejection =
        JobResult { status: gameforge_contract::JobStatus::Rejected, ..failed(&job, ErrorClass::InvalidJob) };
    assert!(matches!(rig.store.finish(&key, &rejection, None, "m-9").await.unwrap(), Finish::Refused(_)));
    assert_eq!(rig.state("late-1").await, JobState::Queued);

    // Queued, nobody holds it: its own message, past its deadline, answers it.
    let answer = failed(&job, ErrorClass::DeadlineExceeded);
    assert_eq!(rig.store.finish(&key, &answer, Some(&job), "m-1").await.unwrap(), Finish::Recorded);
    assert_eq!(rig.state("late-1").await, JobState::Failed);
}

#[tokio::test]
async fn another_owners_jobs_are_invisible_uncancellable_and_its_ids_are_its_own() {
    let rig = rig().await;
    let mallory = Owner::from_arn("arn:aws:sts::123456789012:assumed-role/someone-else/s-1").unwrap();
    let mine = job("shared-1");
    rig.submit(&mine).await.unwrap();
    let theirs = JobKey::owned(&mallory, "shared-1");
    assert_eq!(rig.store.get(&theirs).await.unwrap(), None);
    assert_eq!(rig.store.cancel(&theirs, chrono::Utc::now()).await.unwrap(), CancelOutcome::NotFound);
    // The same id, another request: the other owner's own new job, never a conflict that would reveal mine.
    let mut other = job("shared-1");
    other.prompt = "a moat".into();
    let submitted = submit(&rig.store, &rig.sender, &rig.replies, &other, &mallory).await.unwrap();
    assert_eq!(submitted, Submitted::New);
    let record = rig.store.get(&rig.key("shared-1")).await.unwrap().unwrap();
    assert_eq!((record.owner.as_ref(), record.job.as_ref()), (Some(&rig.owner), Some(&mine)));
    assert_eq!(record.state, JobState::Queued, "untouched by the other owner");
    let record = rig.store.get(&theirs).await.unwrap().unwrap();
    assert_eq!((record.owner.as_ref(), record.job.as_ref()), (Some(&mallory), Some(&other)));

    // Each message tells the worker whose job it carries.
    let messages = gameforge_localaws::drain_queue(&rig.config, &rig.deployment.job_queue_url).await.unwrap();
    let mut owners: Vec<String> = messages
        .iter()
        .map(|m| m.message_attributes().unwrap()[OWNER_ATTRIBUTE].string_value().unwrap().to_string())
        .collect();
    owners.sort();
    assert_eq!(owners, vec![rig.owner.to_string(), mallory.to_string()]);
}

#[tokio::test]
async fn a_reply_queue_must_exist_in_the_deployments_account_and_carry_its_tag() {
    let rig = rig().await;
    let tagged = rig.queue("backend-results", Some("gf")).await;
    let untagged = rig.queue("plain-results", None).await;
    let foreign = rig.queue("foreign-results", Some("another-deployment")).await;
    let missing = tagged.replace("backend-results", "no-such-queue");
    let elsewhere = tagged.replace("123456789012", "210987654321");
    for (id, url, rule) in [
        ("reply-1", untagged.as_str(), "is not tagged gameforge:reply-to=gf"),
        ("reply-2", foreign.as_str(), "is not tagged gameforge:reply-to=gf"),
        ("reply-3", missing.as_str(), "does not exist"),
        ("reply-4", elsewhere.as_str(), "account 210987654321"),
        ("reply-5", "https://example.com/results", "not an SQS queue URL"),
    ] {
        let mut asked = job(id);
        asked.reply_to = Some(url.to_string());
        let error = rig.submit(&asked).await.unwrap_err();
        assert!(matches!(error, SubmitError::ReplyTo(_)), "{id}: {error}");
        assert!(error.to_string().contains(rule), "{id}: {error}");
        let violations = error.violations();
        assert_eq!((violations.len(), violations[0].field.as_str()), (1, "reply_to"), "{id}");
        assert_eq!(rig.store.get(&rig.key(id)).await.unwrap(), None, "{id}: nothing recorded");
    }
    assert_eq!(rig.depth().await, 0, "nothing enqueued");
    let mut asked = job("reply-ok");
    asked.reply_to = Some(tagged);
    assert_eq!(rig.submit(&asked).await.unwrap(), Submitted::New);
    // A client whose job queue does not name the deployment cannot tell its reply queues, and says so.
    let odd = SqsReplyQueues::new(&rig.backend, &untagged);
    let mut asked = job("reply-6");
    asked.reply_to = Some(rig.queue("odd-results", Some("gf")).await);
    let error = submit(&rig.store, &rig.sender, &odd, &asked, &rig.owner).await.unwrap_err();
    assert!(matches!(error, SubmitError::ReplyTo(ReplyToError::UnknownDeployment { .. })), "{error}");
}

#[tokio::test]
async fn the_library_owns_jobs_as_its_callers_identity_and_sees_only_those() {
    let rig = rig().await;
    let settings = ClientSettings {
        job_queue_url: rig.deployment.job_queue_url.clone(),
        jobs_table: rig.deployment.jobs_table.clone(),
        any_tier: None,
    };
    let other = Client::new(&backend(&rig.emulator, &rig.deployment, "another-team").await, &settings);
    let backend = Client::new(&rig.backend, &settings);
    // An assumed role's session is the role, as at the submit endpoint.
    let owner = backend.owner().await.unwrap();
    assert_eq!(owner.as_str(), "arn:aws:sts::123456789012:assumed-role/game-backend");
    assert_ne!(other.owner().await.unwrap(), owner);

    assert_eq!(backend.submit(&job("lib-1")).await.unwrap(), Submitted::New);
    let record = rig.store.get(&JobKey::owned(&owner, "lib-1")).await.unwrap().unwrap();
    assert_eq!(record.owner, Some(owner));
    assert_eq!(other.status("lib-1").await.unwrap(), None);
    assert_eq!(other.cancel("lib-1").await.unwrap(), CancelOutcome::NotFound);
    assert!(matches!(
        other.wait("lib-1", Duration::from_secs(5), |_| {}).await,
        Err(gameforge_jobs::WaitError::NotFound(_))
    ));
    let mut theirs = job("lib-1");
    theirs.prompt = "a different castle".into();
    assert_eq!(other.submit(&theirs).await.unwrap(), Submitted::New, "its own id, not a conflict");
    assert_eq!(backend.status("lib-1").await.unwrap().unwrap().state, JobState::Queued);
    assert!(matches!(backend.cancel("lib-1").await.unwrap(), CancelOutcome::Cancelled(_)));
    assert_eq!(other.status("lib-1").await.unwrap().unwrap().state, JobState::Queued, "the other job stays");
}

#[tokio::test]
async fn the_client_survives_throttling_and_reports_status() {
    let rig = rig().await;
    let client = Client::new(
        &rig.backend,
        &ClientSettings {
            job_queue_url: rig.deployment.job_queue_url.clone(),
            jobs_table: rig.deployment.jobs_table.clone(),
            any_tier: None,
        },
    );
    let throttled = rig.emulator.faults().add(Rule::for_service("dynamodb").throttle().times(3));
    let sqs_throttled = rig.emulator.faults().add(Rule::for_service("sqs").action("SendMessage").throttle().times(2));
    assert_eq!(client.submit(&job("client-1")).await.unwrap(), Submitted::New);
    assert_eq!(throttled.hits(), 3);
    assert_eq!(sqs_throttled.hits(), 2);
    let report = client.status("client-1").await.unwrap().unwrap();
    assert_eq!(report.state, JobState::Queued);
    assert!(client.status("nobody").await.unwrap().is_none());
    let error = client.wait("client-1", Duration::from_millis(600), |_| {}).await.unwrap_err();
    assert!(matches!(error, gameforge_jobs::WaitError::TimedOut { .. }), "{error}");
}

#[tokio::test]
async fn a_reply_queue_reads_as_results_and_anything_else_is_named() {
    let rig = rig().await;
    let sqs = aws_sdk_sqs::Client::new(&rig.config);
    let created = sqs.create_queue().queue_name("backend-results").tags("gameforge:reply-to", "gf").send().await;
    let url = created.unwrap().queue_url().unwrap().to_string();
    let result = cancelled_result("inbox-1", Some(&job("inbox-1")), chrono::Utc::now());
    sqs.send_message().queue_url(&url).message_body(result.to_json()).send().await.unwrap();
    sqs.send_message().queue_url(&url).message_body("hello").send().await.unwrap();
    let inbox = ResultInbox::new(&rig.backend, &url);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(inbox.receive(Duration::from_secs(1)).await.unwrap());
    }
    assert!(got.iter().any(|d| d.result.as_ref().is_ok_and(|r| *r == result)));
    assert!(got.iter().any(|d| d.result.is_err()));
    for delivered in &got {
        inbox.ack(delivered).await.unwrap();
    }
    assert_eq!(queue_depth(&rig.config, &url).await.unwrap(), 0);
}
