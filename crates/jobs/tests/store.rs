//! The status store and submission against the emulator: every transition a job's life needs, idempotent
//! submission, conflicts, races between a cancellation and a claim, and AWS throttling on the way.

use std::time::Duration;

use gameforge_contract::{
    CapacityType, ErrorClass, GenerationJob, JobResult, JobState, Message, Placement, Progress, S3Uri,
};
use gameforge_jobs::{
    CancelOutcome, Claim, Client, ClientSettings, DynamoJobStore, Finish, JobStore, ProgressAnswer, ResultInbox,
    SqsJobSender, SubmitError, Submitted, cancelled_result, submit,
};
use gameforge_localaws::{Deployment, Emulator, Rule, queue_depth};

struct Rig {
    emulator: Emulator,
    deployment: Deployment,
    store: DynamoJobStore,
    sender: SqsJobSender,
    config: aws_config::SdkConfig,
}

async fn rig() -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let store =
        DynamoJobStore::new(aws_sdk_dynamodb::Client::new(&config), &deployment.jobs_table, Duration::from_secs(3600));
    let sender = SqsJobSender::new(aws_sdk_sqs::Client::new(&config), &deployment.job_queue_url);
    Rig { emulator, deployment, store, sender, config }
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

    async fn state(&self, id: &str) -> JobState {
        self.store.get(id).await.unwrap().unwrap().state
    }
}

#[tokio::test]
async fn a_job_id_is_submitted_once_and_a_different_request_under_it_is_a_conflict() {
    let rig = rig().await;
    let first = job("idem-1");
    assert_eq!(submit(&rig.store, &rig.sender, &first, None).await.unwrap(), Submitted::New);
    assert_eq!(rig.state("idem-1").await, JobState::Queued);
    assert_eq!(rig.depth().await, 1);

    // The same request rebuilt later (a retry after a timeout) is the same job: nothing new is enqueued.
    let mut again = job("idem-1");
    again.submitted_at += chrono::Duration::seconds(5);
    let Submitted::Existing(record) = submit(&rig.store, &rig.sender, &again, None).await.unwrap() else {
        panic!("a second submission must find the first");
    };
    assert_eq!(record.state, JobState::Queued);
    assert_eq!(rig.depth().await, 1);

    let mut other = job("idem-1");
    other.prompt = "a different castle".into();
    let error = submit(&rig.store, &rig.sender, &other, None).await.unwrap_err();
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
    let error = submit(&rig.store, &rig.sender, &bad, None).await.unwrap_err();
    let fields: Vec<String> = error.violations().into_iter().map(|v| v.field).collect();
    for field in ["width", "steps", "prompt"] {
        assert!(fields.iter().any(|f| f == field), "{field} missing from {fields:?}");
    }
    assert!(rig.store.get("bad-1").await.unwrap().is_none());
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
    assert!(matches!(submit(&rig.store, &rig.sender, &job, None).await, Err(SubmitError::Aws(_))));
    assert_eq!(rig.state("half-1").await, JobState::Submitted);
    assert_eq!(rig.depth().await, 0);
    assert!(matches!(submit(&rig.store, &rig.sender, &job, None).await.unwrap(), Submitted::Existing(_)));
    assert_eq!(rig.state("half-1").await, JobState::Queued);
    assert_eq!(rig.depth().await, 1);
}

#[tokio::test]
async fn a_job_moves_queued_running_final_and_its_result_is_announced_once() {
    let rig = rig().await;
    let job = job("life-1");
    submit(&rig.store, &rig.sender, &job, None).await.unwrap();

    let Claim::Run(record) = rig.store.claim(&job, "m-1", Some(&placement())).await.unwrap() else { panic!() };
    assert_eq!((record.state, record.runs_started, record.crashes()), (JobState::Running, 1, 1));
    assert_eq!(record.placement, Some(placement()));
    // A second message of the same job id finds it running and must not run it.
    assert!(matches!(rig.store.claim(&job, "m-2", None).await.unwrap(), Claim::Busy(_)));
    assert_eq!(rig.store.progress("life-1", "m-1", 2, 4).await.unwrap(), ProgressAnswer::Continue);
    assert_eq!(rig.store.progress("life-1", "m-2", 2, 4).await.unwrap(), ProgressAnswer::Lost);
    let report = rig.store.get("life-1").await.unwrap().unwrap().report();
    assert_eq!(report.progress, Some(Progress { step: 2, total: 4 }));
    report.validate().unwrap();

    // The worker is told to stop (a drain): the job goes back to the queue, counted as a release.
    rig.store.release("life-1", "m-1").await.unwrap();
    let record = rig.store.get("life-1").await.unwrap().unwrap();
    assert_eq!((record.state, record.crashes()), (JobState::Queued, 0));
    // The same message again (its worker then died): the second run is counted, the crash shows.
    let Claim::Run(_) = rig.store.claim(&job, "m-1", None).await.unwrap() else { panic!() };
    let Claim::Run(record) = rig.store.claim(&job, "m-1", None).await.unwrap() else { panic!() };
    assert_eq!(record.crashes(), 2);

    let result =
        JobResult { image: Some(job.image_location()), ..cancelled_result("life-1", Some(&job), chrono::Utc::now()) };
    let result = JobResult { status: gameforge_contract::JobStatus::Succeeded, error: None, attempt: 2, ..result };
    result.validate().unwrap();
    assert_eq!(rig.store.finish(&result, None).await.unwrap(), Finish::Recorded);
    let Finish::AlreadyFinal(record) = rig.store.finish(&result, None).await.unwrap() else { panic!() };
    assert_eq!((record.state, record.announced), (JobState::Succeeded, false));
    rig.store.mark_announced("life-1").await.unwrap();
    let Claim::Final(record) = rig.store.claim(&job, "m-3", None).await.unwrap() else { panic!() };
    assert!(record.announced);
    assert_eq!(record.result, Some(result));
    assert!(matches!(rig.store.cancel("life-1", chrono::Utc::now()).await.unwrap(), CancelOutcome::AlreadyFinal(_)));
}

#[tokio::test]
async fn a_cancelled_queued_job_is_never_claimed_and_a_running_one_is_asked_to_stop() {
    let rig = rig().await;
    let queued = job("cancel-1");
    submit(&rig.store, &rig.sender, &queued, None).await.unwrap();
    let CancelOutcome::Cancelled(record) = rig.store.cancel("cancel-1", chrono::Utc::now()).await.unwrap() else {
        panic!()
    };
    assert_eq!(record.state, JobState::Cancelled);
    assert_eq!(record.result.as_ref().unwrap().error.as_ref().unwrap().class, ErrorClass::Cancelled);
    let Claim::Final(record) = rig.store.claim(&queued, "m-1", None).await.unwrap() else { panic!() };
    assert!(!record.announced, "the worker that gets the message announces the cancellation");

    let running = job("cancel-2");
    submit(&rig.store, &rig.sender, &running, None).await.unwrap();
    let Claim::Run(_) = rig.store.claim(&running, "m-2", None).await.unwrap() else { panic!() };
    assert!(matches!(rig.store.cancel("cancel-2", chrono::Utc::now()).await.unwrap(), CancelOutcome::Requested(_)));
    assert_eq!(rig.store.progress("cancel-2", "m-2", 1, 4).await.unwrap(), ProgressAnswer::Cancel);
    assert_eq!(rig.store.cancel("nobody", chrono::Utc::now()).await.unwrap(), CancelOutcome::NotFound);
}

#[tokio::test]
async fn a_job_sent_with_a_plain_send_message_gets_a_record_when_a_worker_claims_it() {
    let rig = rig().await;
    let job = job("plain-1");
    let Claim::Run(record) = rig.store.claim(&job, "m-1", Some(&placement())).await.unwrap() else { panic!() };
    assert_eq!(record.state, JobState::Running);
    assert_eq!(record.job.as_ref(), Some(&job));
    assert_eq!(record.report().submitted_at, Some(job.submitted_at));
}

#[tokio::test]
async fn the_client_survives_throttling_and_reports_status() {
    let rig = rig().await;
    let client = Client::new(
        &rig.config,
        &ClientSettings {
            job_queue_url: rig.deployment.job_queue_url.clone(),
            jobs_table: rig.deployment.jobs_table.clone(),
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
    let url = sqs.create_queue().queue_name("backend-results").send().await.unwrap().queue_url().unwrap().to_string();
    let result = cancelled_result("inbox-1", Some(&job("inbox-1")), chrono::Utc::now());
    sqs.send_message().queue_url(&url).message_body(result.to_json()).send().await.unwrap();
    sqs.send_message().queue_url(&url).message_body("hello").send().await.unwrap();
    let inbox = ResultInbox::new(&rig.config, &url);
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
