//! `gameforge jobs --submit-url`: the command line through the deployment's submit URL, the function as deployed
//! (its environment and role, enforced) behind a loopback `AWS_IAM` function URL that verifies each request's
//! SigV4 signature and then IAM. The caller's role holds only the template's SubmitCallerPolicy: no queue, table
//! or bucket access, so everything it does goes through the URL.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use gameforge_localaws::{Deployment, Emulator, FunctionUrlServer, LambdaHost, RoleCredentials, queue_depth};
use serde_json::Value;
use support::binary;

mod support;

struct Rig {
    emulator: Emulator,
    config: aws_config::SdkConfig,
    deployment: Deployment,
    url: FunctionUrlServer,
    /// SubmitCallerPolicy only.
    caller: RoleCredentials,
    /// GameBackendPolicy only: direct access, but not the URL's invoke permission.
    outsider: RoleCredentials,
    _host: Arc<LambdaHost>,
}

async fn rig() -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let role = emulator.assume_role(&deployment.role_name("submit"), "submit").await.unwrap();
    let mut env = emulator.env_as(&role);
    env.extend(deployment.function_env(&config, "submit").await.unwrap());
    let host = Arc::new(LambdaHost::start(&binary("submit"), "submit", &env).unwrap());
    host.wait_ready(Duration::from_secs(30)).await.unwrap();
    let function_arn = deployment.function_arn(&config, "submit").await.unwrap();
    let timeout = deployment.function_timeout(&config, "submit").await.unwrap();
    let caller =
        emulator.role_with_policies("url-caller", &[&deployment.outputs["SubmitCallerPolicyArn"]]).await.unwrap();
    let outsider =
        emulator.role_with_policies("outsider", &[&deployment.outputs["GameBackendPolicyArn"]]).await.unwrap();
    let url = FunctionUrlServer::start(
        &emulator,
        host.clone(),
        &function_arn,
        timeout,
        vec![caller.clone(), outsider.clone()],
    )
    .unwrap();
    Rig { emulator, config, deployment, url, caller, outsider, _host: host }
}

impl Rig {
    /// The command line as `who`, with only the submit URL configured: no queue or table settings at all.
    fn jobs_as(&self, who: &RoleCredentials, args: &[&str]) -> Output {
        Command::new(binary("gameforge"))
            .arg("jobs")
            .args(args)
            .envs(self.emulator.env_as(who))
            .env_remove("GAMEFORGE_JOB_QUEUE_URL")
            .env_remove("GAMEFORGE_JOBS_TABLE")
            .env_remove("GAMEFORGE_MODEL")
            .env_remove("GAMEFORGE_OUTPUT_PREFIX")
            .env("GAMEFORGE_SUBMIT_URL", self.url.url())
            .output()
            .unwrap()
    }

    fn jobs(&self, args: &[&str]) -> Output {
        self.jobs_as(&self.caller, args)
    }

    async fn depth(&self) -> usize {
        queue_depth(&self.config, &self.deployment.job_queue_url).await.unwrap()
    }
}

fn json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_status_and_cancel_through_the_url_with_only_its_invoke_permission() {
    let rig = rig().await;
    // Model and output left to the deployment: its model, and the caller's own folder.
    let submit = ["submit", "--json", "--job-id", "u-1", "--prompt", "a castle", "--width", "64", "--height", "64"];
    assert_eq!(json(&rig.jobs(&submit))["outcome"], "new");
    let again = json(&rig.jobs(&submit));
    assert_eq!((again["outcome"].as_str(), again["state"].as_str()), (Some("existing"), Some("queued")));
    assert_eq!(rig.depth().await, 1);

    let mut conflicting = submit.to_vec();
    conflicting[5] = "a different castle";
    let out = rig.jobs(&conflicting);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different request"), "{out:?}");

    let status = json(&rig.jobs(&["status", "--json", "u-1"]));
    assert_eq!(status["state"], "queued");
    let human = rig.jobs(&["status", "u-1"]);
    assert_eq!(String::from_utf8_lossy(&human.stdout).trim(), "u-1: queued");
    assert_eq!(rig.jobs(&["status", "nobody"]).status.code(), Some(1));

    let cancel = json(&rig.jobs(&["cancel", "--json", "u-1"]));
    assert_eq!((cancel["outcome"].as_str(), cancel["state"].as_str()), (Some("cancelled"), Some("cancelled")));
    let waited = rig.jobs(&["wait", "--json", "u-1", "--timeout", "10"]);
    assert_eq!(waited.status.code(), Some(6), "{}", String::from_utf8_lossy(&waited.stderr));
    assert_eq!(json_any(&waited)["error"]["class"], "cancelled");
    assert_eq!(json(&rig.jobs(&["cancel", "--json", "u-1"]))["outcome"], "already_final");

    // Listing reads the status table, which the URL does not offer: said so, not a denial.
    let out = rig.jobs(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not offered by the submit URL"), "{out:?}");
    let denied = rig.emulator.iam().take_denials();
    assert!(denied.is_empty(), "the caller needed more than SubmitCallerPolicy: {denied:?}");
}

fn json_any(output: &Output) -> Value {
    serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_job_exits_3_listing_every_violation_and_a_refusal_at_the_door_is_explained() {
    let rig = rig().await;
    let out = rig.jobs(&["submit", "--job-id", "bad", "--prompt", "a castle", "--width", "65", "--steps", "0"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid job") && stderr.contains("width:") && stderr.contains("steps:"), "{stderr}");
    let out = rig.jobs(&[
        "submit",
        "--job-id",
        "elsewhere",
        "--prompt",
        "a castle",
        "--output-prefix",
        "s3://other-bucket/images",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("output:"), "{out:?}");
    assert_eq!(rig.depth().await, 0);

    // Signed, but by a principal without the URL's invoke permission: the URL's 403, never the function.
    let out = rig.jobs_as(&rig.outsider, &["status", "u-1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403 Forbidden") && stderr.contains("SubmitCallerPolicy"), "{stderr}");
    assert!(!rig.emulator.iam().take_denials().is_empty(), "IAM refused the outsider");

    // Signed with credentials the URL does not know (a forged or expired key): the same 403.
    let mut stranger = rig.caller.clone();
    stranger.secret_access_key = "not-the-secret".into();
    let out = rig.jobs_as(&stranger, &["submit", "--job-id", "s-1", "--prompt", "a castle"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403 Forbidden"), "{out:?}");
    assert_eq!(rig.depth().await, 0);
}
