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
        self.jobs_as(&self.backend, args)
    }

    fn jobs_as(&self, backend: &RoleCredentials, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gameforge"))
            .arg("jobs")
            .args(args)
            .envs(self.emulator.env_as(backend))
            .env("GAMEFORGE_JOB_QUEUE_URL", &self.deployment.job_queue_url)
            .env("GAMEFORGE_JOBS_TABLE", &self.deployment.jobs_table)
            .env("GAMEFORGE_MODEL", "tiny")
            .env("GAMEFORGE_OUTPUT_PREFIX", "s3://images/out")
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

/// A game backend that signs in through its shared config files, as AWS's own tools do: a profile whose
/// credentials come from a `credential_process` (the same door IAM Identity Center tooling and vaults use),
/// chosen with `--profile`, in the region `--region` names. No key is in the environment, and IAM is enforced on
/// what the process hands over.
#[tokio::test]
async fn the_cli_acts_as_a_profile_whose_credentials_come_from_a_credential_process() {
    let rig = rig().await;
    let dir = std::env::temp_dir().join(format!("gameforge-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let credentials = dir.join("credentials.json");
    let body = serde_json::json!({
        "Version": 1,
        "AccessKeyId": rig.backend.access_key_id,
        "SecretAccessKey": rig.backend.secret_access_key,
        "SessionToken": rig.backend.session_token,
    });
    std::fs::write(&credentials, body.to_string()).unwrap();
    let config = dir.join("config");
    std::fs::write(&config, format!("[profile backend]\ncredential_process = cat {}\n", credentials.display()))
        .unwrap();
    let endpoint = rig.emulator.endpoint();
    let run = |profile: &str| {
        Command::new(env!("CARGO_BIN_EXE_gameforge"))
            .args(["--profile", profile, "--region", "us-east-1", "jobs", "submit", "--json", "--job-id", "p-1"])
            .args(["--prompt", "a castle", "--width", "64", "--height", "64"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("GAMEFORGE_JOB_QUEUE_URL", &rig.deployment.job_queue_url)
            .env("GAMEFORGE_JOBS_TABLE", &rig.deployment.jobs_table)
            .env("GAMEFORGE_MODEL", "tiny")
            .env("GAMEFORGE_OUTPUT_PREFIX", "s3://images/out")
            .output()
            .unwrap()
    };
    let out = run("backend");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["outcome"], "new");
    assert_eq!(rig.depth().await, 1);
}

/// A setting under its former name still works, and the warning names the new one.
#[tokio::test]
async fn a_setting_under_its_former_name_is_read_with_a_warning() {
    let rig = rig().await;
    let out = Command::new(env!("CARGO_BIN_EXE_gameforge"))
        .args([
            "jobs", "submit", "--json", "--job-id", "old-1", "--prompt", "a castle", "--width", "64", "--height", "64",
        ])
        .envs(rig.emulator.env_as(&rig.backend))
        .env("GAMEFORGE_JOB_QUEUE_URL", &rig.deployment.job_queue_url)
        .env("GAMEFORGE_JOBS_TABLE", &rig.deployment.jobs_table)
        .env("GAMEFORGE_MODEL", "tiny")
        .env_remove("GAMEFORGE_OUTPUT_PREFIX")
        .env("GAMEFORGE_OUTPUT", "s3://images/out")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("GAMEFORGE_OUTPUT is a former name: set GAMEFORGE_OUTPUT_PREFIX instead"), "{stderr}");
    assert_eq!(rig.depth().await, 1);
}

/// `--stack NAME` finds the queue and the table in the home stack's outputs (the backend's policy may read
/// them, and only them: another stack is denied, and the error says which stack).
#[tokio::test]
async fn the_settings_come_from_the_stack_when_it_is_named() {
    let rig = rig().await;
    let run = |stack: &str| {
        Command::new(env!("CARGO_BIN_EXE_gameforge"))
            .args(["jobs", "submit", "--stack", stack, "--json", "--job-id", "s-1", "--prompt", "a castle"])
            .args(["--width", "64", "--height", "64"])
            .envs(rig.emulator.env_as(&rig.backend))
            .env_remove("GAMEFORGE_JOB_QUEUE_URL")
            .env_remove("GAMEFORGE_JOBS_TABLE")
            .env("GAMEFORGE_MODEL", "tiny")
            .env("GAMEFORGE_OUTPUT_PREFIX", "s3://images/out")
            .output()
            .unwrap()
    };
    let out = run("gf");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["outcome"], "new");
    assert_eq!(rig.depth().await, 1);
    let out = run("nowhere");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stack nowhere") && stderr.contains("AccessDenied"), "{stderr}");
    let denied = rig.emulator.iam().take_denials();
    assert_eq!(denied.len(), 1, "{denied:?}");
}

/// `jobs list`: the caller's own jobs through the status table's owner index (the backend's policy grants the
/// query on that index only, enforced), newest first, narrowed by state and count; another owner's jobs never
/// appear, though ids are shared.
#[tokio::test]
async fn a_listing_shows_only_the_callers_own_jobs_newest_first_by_state_and_limit() {
    let rig = rig().await;
    let other = rig
        .emulator
        .role_with_policies("other-backend", &[&rig.deployment.outputs["GameBackendPolicyArn"]])
        .await
        .unwrap();
    let submit = |backend: &RoleCredentials, id: &str| {
        let out = rig
            .jobs_as(backend, &["submit", "--job-id", id, "--prompt", "a castle", "--width", "64", "--height", "64"]);
        assert!(out.status.success(), "{id}: {}", String::from_utf8_lossy(&out.stderr));
    };
    for id in ["l-1", "l-2", "l-3"] {
        submit(&rig.backend, id);
    }
    submit(&other, "l-2");
    submit(&other, "o-1");
    assert!(rig.jobs(&["cancel", "l-2"]).status.success());

    let ids = |out: &Output| -> Vec<(String, String)> {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let report: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                (report["job_id"].as_str().unwrap().to_owned(), report["state"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(
        ids(&rig.jobs(&["list", "--json"])),
        pairs(&[("l-3", "queued"), ("l-2", "cancelled"), ("l-1", "queued")])
    );
    assert_eq!(ids(&rig.jobs_as(&other, &["list", "--json"])), pairs(&[("o-1", "queued"), ("l-2", "queued")]));
    assert_eq!(ids(&rig.jobs(&["list", "--json", "--state", "cancelled"])), pairs(&[("l-2", "cancelled")]));
    assert_eq!(ids(&rig.jobs(&["list", "--json", "--state", "queued", "--limit", "1"])), pairs(&[("l-3", "queued")]));
    assert_eq!(ids(&rig.jobs(&["list", "--json", "--limit", "2"])), pairs(&[("l-3", "queued"), ("l-2", "cancelled")]));
    assert!(ids(&rig.jobs(&["list", "--json", "--state", "running"])).is_empty());

    let human = rig.jobs(&["list", "--limit", "2"]);
    let stdout = String::from_utf8_lossy(&human.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "l-3: queued");
    assert!(lines[1].starts_with("l-2: cancelled — l-2 failed (cancelled)"), "{stdout}");
    assert_eq!(rig.jobs(&["list", "--limit", "0"]).status.code(), Some(2), "a usage error");
    let denied = rig.emulator.iam().take_denials();
    assert!(denied.is_empty(), "{denied:?}");
}
