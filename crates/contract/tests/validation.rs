use gameforge_contract::{
    CONTRACT_VERSION, ContractError, ControlCommand, ControlJob, ErrorClass, GenerationJob, JobFailure, JobResult,
    JobStatus, Message, S3Uri, Scheduler, Signal, Timings,
};
use serde_json::json;

fn valid_job() -> serde_json::Value {
    json!({
        "version": 1,
        "job_id": "castle-42",
        "prompt": "a castle on a cliff at dusk, matte painting",
        "model_id": "sdxl-base-1.0",
        "output": "s3://game-art/renders/",
        "submitted_at": "2026-11-27T10:00:00Z"
    })
}

fn fields(error: &ContractError) -> Vec<String> {
    error.violations().into_iter().map(|v| v.field).collect()
}

#[test]
fn a_minimal_job_gets_the_sdxl_defaults() {
    let job = GenerationJob::from_value(valid_job()).unwrap();
    assert_eq!((job.width, job.height, job.steps), (1024, 1024, 30));
    assert_eq!(job.guidance, 5.0);
    assert_eq!(job.scheduler, Scheduler::Euler);
    assert_eq!(job.image_location().as_str(), "s3://game-art/renders/castle-42.png");
}

#[test]
fn a_job_survives_a_round_trip() {
    let mut job = GenerationJob::new("j1", "a sword", "sdxl-turbo", S3Uri::parse("s3://bucket/out").unwrap());
    job.steps = 4;
    job.guidance = 0.0;
    job.seed = Some(42);
    job.scheduler = Scheduler::EulerA;
    job.labels.insert("asset".into(), "sword-01".into());
    job.validate().unwrap();
    let back = GenerationJob::from_json(job.to_json().as_bytes()).unwrap();
    assert_eq!(back, job);
}

#[test]
fn every_violation_is_reported_by_field_name() {
    let mut job = valid_job();
    job["width"] = json!(1001);
    job["height"] = json!(8);
    job["steps"] = json!(0);
    job["guidance"] = json!("high");
    job["scheduler"] = json!("dpm");
    job["output"] = json!("game-art/renders");
    job["negative_promt"] = json!("blurry");
    job.as_object_mut().unwrap().remove("prompt");
    let error = GenerationJob::from_value(job).unwrap_err();
    let fields = fields(&error);
    for expected in ["width", "height", "steps", "guidance", "scheduler", "output", "negative_promt", "prompt"] {
        assert!(fields.contains(&expected.to_owned()), "no violation for {expected}: {error}");
    }
}

#[test]
fn cross_field_rules_are_checked_after_the_schema() {
    let mut job = valid_job();
    job["deadline"] = json!("2026-11-27T09:00:00Z");
    job["prompt"] = json!("   ");
    let error = GenerationJob::from_value(job).unwrap_err();
    assert_eq!(fields(&error), vec!["deadline", "prompt"]);
}

#[test]
fn timestamps_must_be_rfc3339() {
    let mut job = valid_job();
    job["submitted_at"] = json!("yesterday");
    assert_eq!(fields(&GenerationJob::from_value(job).unwrap_err()), vec!["submitted_at"]);
}

#[test]
fn seeds_stay_within_what_every_json_implementation_carries() {
    let mut job = valid_job();
    job["seed"] = json!(9_007_199_254_740_991_u64);
    GenerationJob::from_value(job.clone()).unwrap();
    job["seed"] = json!(9_007_199_254_740_992_u64);
    assert_eq!(fields(&GenerationJob::from_value(job).unwrap_err()), vec!["seed"]);
}

#[test]
fn another_contract_version_is_named_as_such() {
    let mut job = valid_job();
    job["version"] = json!(2);
    assert!(matches!(GenerationJob::from_value(job), Err(ContractError::UnsupportedVersion { .. })));
}

#[test]
fn garbage_is_not_json() {
    assert!(matches!(GenerationJob::from_json(b"{not json"), Err(ContractError::NotJson(_))));
    let error = GenerationJob::from_json(b"[1,2]").unwrap_err();
    assert!(matches!(error, ContractError::Invalid(_)), "{error}");
}

fn result(status: JobStatus) -> JobResult {
    JobResult {
        version: CONTRACT_VERSION,
        job_id: "castle-42".into(),
        status,
        image: None,
        error: None,
        timings: Timings {
            submitted_at: "2026-11-27T10:00:00Z".parse().unwrap(),
            started_at: Some("2026-11-27T10:00:05Z".parse().unwrap()),
            finished_at: "2026-11-27T10:00:09Z".parse().unwrap(),
            queue_wait_ms: Some(5000),
            generation_ms: Some(4000),
        },
        placement: None,
        tier: Some(gameforge_contract::Tier::Gpu),
        seed: Some(7),
        prompt_truncated: false,
        attempt: 1,
        labels: Default::default(),
    }
}

#[test]
fn a_result_carries_an_image_exactly_when_it_succeeded() {
    let error = result(JobStatus::Succeeded).validate().unwrap_err();
    assert_eq!(fields(&error), vec!["image"]);

    let mut failed = result(JobStatus::Failed);
    failed.image = Some(S3Uri::parse("s3://game-art/x.png").unwrap());
    assert_eq!(fields(&failed.validate().unwrap_err()), vec!["error", "image"]);

    let mut rejected = result(JobStatus::Rejected);
    rejected.error = Some(JobFailure { class: ErrorClass::InvalidJob, message: "width: not a multiple of 8".into() });
    rejected.validate().unwrap();
    let back = JobResult::from_json(rejected.to_json().as_bytes()).unwrap();
    assert_eq!(back, rejected);
}

#[test]
fn a_classification_reads_back_as_the_same_signal() {
    let text = json!({
        "kind": "capacity_unavailable",
        "event_id": "e1",
        "region": "us-east-1",
        "instance_type": "g5.xlarge",
        "availability_zone": "us-east-1a",
        "capacity_type": null,
        "cause": "insufficient_capacity",
        "source": "autoscaling",
        "available_zones": ["us-east-1b"]
    });
    let signal = Signal::from_value(text.clone()).unwrap();
    assert_eq!(signal.kind(), "capacity_unavailable");
    assert_eq!(serde_json::to_value(&signal).unwrap(), text);
}

#[test]
fn a_control_job_carries_one_offering() {
    let Signal::CapacityUnavailable(mut shortage) = Signal::from_value(json!({
        "kind": "capacity_unavailable", "event_id": "e1", "region": "us-east-1", "instance_type": "g5.xlarge",
        "availability_zone": null, "capacity_type": "spot", "cause": "quota", "source": "fleet"
    }))
    .unwrap() else {
        panic!("wrong kind")
    };
    let job = ControlJob {
        version: CONTRACT_VERSION,
        control_id: "sig-e1-0".into(),
        fleet: "sdxl".into(),
        emitted_at: "2026-11-27T10:00:00Z".parse().unwrap(),
        command: ControlCommand::RecordCapacityFailure { shortage: shortage.clone() },
    };
    job.validate().unwrap();
    assert_eq!(ControlJob::from_json(job.to_json().as_bytes()).unwrap(), job);

    shortage.other_offerings.push(shortage.offerings()[0].clone());
    let job = ControlJob { command: ControlCommand::RecordCapacityFailure { shortage }, ..job };
    assert_eq!(fields(&job.validate().unwrap_err()), vec!["command.shortage.other_offerings"]);
}

#[test]
fn a_commands_kind_is_its_wire_type() {
    let Signal::CapacityUnavailable(shortage) = Signal::from_value(json!({
        "kind": "capacity_unavailable", "event_id": "e1", "region": "us-east-1", "instance_type": "g5.xlarge",
        "availability_zone": null, "capacity_type": "spot", "cause": "quota", "source": "fleet"
    }))
    .unwrap() else {
        panic!("wrong kind")
    };
    let commands = [
        ControlCommand::RecordCapacityFailure { shortage },
        ControlCommand::Reconcile,
        ControlCommand::AcquireCapacity { round: 1, clear_errors: false, reason: "r".into() },
        ControlCommand::Migrate { to: None, reason: "r".into() },
        ControlCommand::DrainInstance { instance_id: "i-1".into(), region: "us-east-1".into() },
    ];
    for command in commands {
        assert_eq!(serde_json::to_value(&command).unwrap()["type"], command.kind());
    }
}
