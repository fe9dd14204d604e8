//! The game backend's command line through a real worker: `gameforge jobs submit --wait --out` against the
//! emulator and an `sdxl-worker serve` process on the tiny model. Everything comes from `infra/gameforge.yaml` as
//! deployed: the worker's environment from its task definition, the command line's from the stack outputs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use gameforge_localaws::{Deployment, Emulator, RoleCredentials, with_env};
use serde_json::Value;
use support::binary;

mod support;

struct Worker(Child, Arc<Mutex<Vec<Value>>>);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command line configured from the stack's outputs, as the deployment guide says, run by the game backend's
/// role (the template's GameBackendPolicy, enforced).
fn jobs(emulator: &Emulator, deployment: &Deployment, backend: &RoleCredentials, args: &[&str]) -> Output {
    Command::new(binary("gameforge"))
        .arg("jobs")
        .args(args)
        .envs(emulator.env_as(backend))
        .env("GAMEFORGE_JOB_QUEUE_URL", &deployment.outputs["JobQueueUrl"])
        .env("GAMEFORGE_JOBS_TABLE", &deployment.outputs["JobsTableArn"])
        .env("GAMEFORGE_MODEL", "sdxl-base")
        .env("GAMEFORGE_OUTPUT_PREFIX", format!("s3://{}/images", deployment.output_bucket))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_downloads_the_image_and_a_resubmission_returns_the_same_result() {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let policy = deployment.outputs["GameBackendPolicyArn"].clone();
    let backend = emulator.role_with_policies("game-backend", &[&policy]).await.unwrap();
    let task_role = emulator.assume_role(&deployment.role_name("worker-task"), "worker task").await.unwrap();
    // The worker runs with its task definition's environment and its task role; only the weights are the tiny
    // test model's.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/tests/fixtures/tiny-sdxl-a");
    let worker_env =
        with_env(deployment.worker_env(&config).await.unwrap(), "GAMEFORGE_MODEL", model.to_str().unwrap());
    let mut child = Command::new(binary("sdxl-worker"))
        .arg("serve")
        .args(["--health-addr", "127.0.0.1:0", "--imds", "off", "--cpu", "--receive-wait-seconds", "1"])
        .envs(emulator.env_as(&task_role))
        .envs(worker_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(value);
            }
        }
    });
    let worker = Worker(child, lines);

    let out = tempfile::tempdir().unwrap();
    let submit = [
        "submit",
        "--json",
        "--job-id",
        "e2e-1",
        "--prompt",
        "a castle on a hill",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "4",
        "--seed",
        "7",
        "--label",
        "asset=castle",
        "--wait",
        "--timeout",
        "180",
        "--out",
    ];
    let first = jobs(&emulator, &deployment, &backend, &[&submit[..], &[out.path().to_str().unwrap()]].concat());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let result: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!((result["status"].as_str(), result["labels"]["asset"].as_str()), (Some("succeeded"), Some("castle")));
    assert_eq!(result["image"], format!("s3://{}/images/e2e-1.png", deployment.output_bucket));
    let png = std::fs::read(out.path().join("e2e-1.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));

    let status = jobs(&emulator, &deployment, &backend, &["status", "--json", "e2e-1"]);
    let report: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((report["state"].as_str(), report["result"]["seed"].as_u64()), (Some("succeeded"), Some(7)));

    // The backend retries the whole call: the same job, the same result, and no second generation.
    let again = jobs(&emulator, &deployment, &backend, &[&submit[..], &[out.path().to_str().unwrap()]].concat());
    assert!(again.status.success());
    let second: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(second, result);
    let started = worker.1.lock().unwrap().iter().filter(|v| v["message"] == "job started").count();
    assert_eq!(started, 1);
}
