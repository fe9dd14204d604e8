//! `gameforge jobs` against the emulator, without a worker: validation with every violation listed, one job per
//! id, status and cancellation, and exit codes that tell rejected, cancelled and timed-out apart. The round trip
//! through a worker is in `tests/jobs_cli.rs`.

use std::process::{Command, Output};

use gameforge_localaws::{Deployment, Emulator, RoleCredentials, queue_depth};
use serde_json::Value;

struct Rig {
    emulator: Emulator,
    deployment: Deployment,
    config: aws_config::SdkConfig,
    /// The game backend that runs the CLI: a role with the template's GameBackendPolicy, enforced.
    backend: RoleCredentials,
}

async fn rig() -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let policy = deployment.outputs["GameBackendPolicyArn"].clone();
    let backend = emulator.role_with_policies("game-backend", &[&policy]).await.unwrap();
    Rig { emulator, deployment, config, backend }
}

impl Rig {
    fn jobs(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gameforge"))
            .arg("jobs")
            .args(args)
            .envs(self.emulator.env_as(&self.backend))
            .env("GAMEFORGE_JOB_QUEUE_URL", &self.deployment.job_queue_url)
            .env("GAMEFORGE_JOBS_TABLE", &self.deployment.jobs_table)
            .env("GAMEFORGE_MODEL", "tiny")
            .env("GAMEFORGE_OUTPUT", "s3://images/out")
            .output()
            .unwrap()
    }

    async fn depth(&self) -> usize {
        queue_depth(&self.config, &self.deployment.job_queue_url).await.unwrap()
    }
}

fn json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

#[tokio::test]
async fn an_invalid_job_exits_3_listing_every_violation_and_enqueues_nothing() {
    let rig = rig().await;
    let out = rig.jobs(&["submit", "--job-id", "bad", "--prompt", "a castle", "--width", "65", "--steps", "0"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("width:") && stderr.contains("steps:"), "{stderr}");
    assert_eq!(rig.depth().await, 0);
    let out = rig.jobs(&["status", "bad"]);
    assert_eq!(out.status.code(), Some(1), "nothing was recorded");
}

#[tokio::test]
async fn one_job_per_id_its_status_and_its_cancellation() {
    let rig = rig().await;
    let submit = ["submit", "--json", "--job-id", "cli-1", "--prompt", "a castle", "--width", "64", "--height", "64"];
    let first = rig.jobs(&submit);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(json(&first)["outcome"], "new");
    let second = rig.jobs(&submit);
    assert_eq!(
        (json(&second)["outcome"].clone(), json(&second)["state"].clone()),
        ("existing".into(), "queued".into())
    );
    assert_eq!(rig.depth().await, 1);

    let mut conflicting = submit.to_vec();
    conflicting[5] = "a different castle";
    let out = rig.jobs(&conflicting);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different request"));

    let status = json(&rig.jobs(&["status", "--json", "cli-1"]));
    assert_eq!(status["state"], "queued");
    let human = rig.jobs(&["status", "cli-1"]);
    assert_eq!(String::from_utf8_lossy(&human.stdout).trim(), "cli-1: queued");

    // Not reached by a worker yet: cancelled at once, and waiting on it ends with the cancellation's code.
    let cancel = json(&rig.jobs(&["cancel", "--json", "cli-1"]));
    assert_eq!((cancel["outcome"].as_str(), cancel["state"].as_str()), (Some("cancelled"), Some("cancelled")));
    let waited = rig.jobs(&["wait", "--json", "cli-1"]);
    assert_eq!(waited.status.code(), Some(6));
    let result = json(&waited);
    assert_eq!((result["status"].as_str(), result["error"]["class"].as_str()), (Some("failed"), Some("cancelled")));
    let again = json(&rig.jobs(&["cancel", "--json", "cli-1"]));
    assert_eq!(again["outcome"], "already_final");
}

#[tokio::test]
async fn waiting_gives_up_with_exit_5_and_unknown_jobs_and_missing_settings_are_errors() {
    let rig = rig().await;
    let out = rig.jobs(&["submit", "--job-id", "slow-1", "--prompt", "a castle", "--wait", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("slow-1 is queued"));
    assert_eq!(rig.jobs(&["wait", "nobody"]).status.code(), Some(1));
    let out = Command::new(env!("CARGO_BIN_EXE_gameforge"))
        .args(["jobs", "status", "x"])
        .env_remove("GAMEFORGE_JOB_QUEUE_URL")
        .env_remove("GAMEFORGE_JOBS_TABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("GAMEFORGE_JOB_QUEUE_URL is missing; GAMEFORGE_JOBS_TABLE is missing")
    );
}

#[tokio::test]
async fn a_reply_queue_that_is_not_the_deployments_exits_3_naming_the_rule_and_enqueues_nothing() {
    let rig = rig().await;
    let sqs = aws_sdk_sqs::Client::new(&rig.config);
    let untagged = sqs.create_queue().queue_name("cli-results").send().await.unwrap().queue_url.unwrap();
    let out = rig.jobs(&["submit", "--job-id", "cli-reply", "--prompt", "a castle", "--reply-to", &untagged]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid reply_to") && stderr.contains("gameforge:reply-to=gf"), "{stderr}");
    assert_eq!(rig.depth().await, 0);
    assert_eq!(rig.jobs(&["status", "cli-reply"]).status.code(), Some(1), "nothing was recorded");
    sqs.tag_queue().queue_url(&untagged).tags("gameforge:reply-to", "gf").send().await.unwrap();
    let out = rig.jobs(&["submit", "--job-id", "cli-reply", "--prompt", "a castle", "--reply-to", &untagged]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_deadline_beyond_fourteen_days_is_a_usage_error_naming_the_bound_not_a_panic() {
    for far in ["9000000000000000", "1209601", "0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_gameforge"))
            .args(["jobs", "submit", "--prompt", "a castle", "--model", "tiny", "--output-prefix", "s3://images/out"])
            .args(["--deadline-in", far])
            .env("GAMEFORGE_JOB_QUEUE_URL", "http://127.0.0.1:9/123456789012/gf-jobs")
            .env("GAMEFORGE_JOBS_TABLE", "gf-jobs")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{far}: {stderr}");
        assert!(stderr.contains("--deadline-in") && stderr.contains("1..=1209600"), "{far}: {stderr}");
        assert!(!stderr.contains("panicked"), "{far}: {stderr}");
    }
}
