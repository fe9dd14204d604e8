//! Schemathesis fuzzes the submit function through its OpenAPI description
//! (`crates/contract/openapi/submit.openapi.json`), over HTTP, as deployed: the template's environment (its rate
//! limit included) and role, enforced, behind an `AWS_IAM` function URL on a loopback port that verifies every
//! request's SigV4 signature. The caller is a game backend's role with the template's SubmitCallerPolicy;
//! schemathesis signs each request as sent (`openapi_fuzz/sigv4_hooks.py`). Valid and invalid requests alike must
//! get no 5xx, and every answer must be one the document describes: its status code, content type, headers and
//! schema. Unsigned or wrongly signed requests never reach the function.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gameforge_localaws::{Deployment, Emulator, FunctionUrlServer, LambdaHost, queue_depth, tools};

const BINARY: &str = env!("CARGO_BIN_EXE_submit");
/// Test cases per operation and phase; at the template's rate limit (5 a second, bursts of 20) the run takes
/// about 80 s (some 370 cases).
const MAX_EXAMPLES: &str = "15";
/// Under the template's rate limit, so that most requests reach the handler rather than its 429.
const RATE: &str = "5/s";

/// Every check of schemathesis but these:
/// - `missing_required_header` wants 401 for a request without `Authorization`; a function URL answers 403, as
///   AWS does (and as the document says);
/// - `ignored_auth` sends the credentials it generated for the `sigv4` scheme and expects a refusal, but the
///   hooks replace them with a valid signature (this test sends unsigned and forged requests itself);
/// - `positive_data_acceptance` wants every schema-valid job accepted, but `output` and `reply_to` are checked
///   against the caller's folder and the deployment's queues after the schema (documented 400s).
const EXCLUDED_CHECKS: &str = "missing_required_header,ignored_auth,positive_data_acceptance";

/// `(status, body)` of one plain HTTP/1.1 request to `addr`.
fn raw_request(addr: &str, request: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// How many answers of each status code the run's NDJSON report records.
fn statuses(report: &Path) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(report).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for found in text.split("\"status_code\":").skip(1) {
            if let Ok(status) = found.chars().take_while(char::is_ascii_digit).collect::<String>().parse() {
                *counts.entry(status).or_default() += 1;
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let root = tools::repo_root();
    let venv_python = tools::venv_python().unwrap();
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let role = emulator.assume_role(&deployment.role_name("submit"), "submit").await.unwrap();
    let mut env = emulator.env_as(&role);
    env.extend(deployment.function_env(&config, "submit").await.unwrap());
    let host = Arc::new(LambdaHost::start(Path::new(BINARY), "submit", &env).unwrap());
    host.wait_ready(Duration::from_secs(30)).await.unwrap();
    let function_arn = deployment.function_arn(&config, "submit").await.unwrap();
    let timeout = deployment.function_timeout(&config, "submit").await.unwrap();
    let backend =
        emulator.role_with_policies("game-backend", &[&deployment.outputs["SubmitCallerPolicyArn"]]).await.unwrap();
    let url = FunctionUrlServer::start(&emulator, host.clone(), &function_arn, timeout, vec![backend.clone()]).unwrap();
    let addr = url.url().trim_start_matches("http://").to_owned();

    // The door: unsigned and wrongly signed requests are the URL's 403, and the function never runs.
    let body = r#"{"job_id":"unsigned-1","prompt":"a castle"}"#;
    let unsigned = format!(
        "POST /jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw_request(&addr, &unsigned), (403, r#"{"Message":"Forbidden"}"#.to_owned()));
    let forged = unsigned.replace(
        "Content-Type",
        &format!(
            "X-Amz-Date: 20261127T080000Z\r\nX-Amz-Security-Token: {}\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential={}/20261127/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\n\
             Content-Type",
            backend.session_token, backend.access_key_id
        ),
    );
    assert_eq!(raw_request(&addr, &forged).0, 403);
    assert_eq!(queue_depth(&config, &deployment.job_queue_url).await.unwrap(), 0);

    let schemathesis = venv_python.parent().unwrap().join("schemathesis");
    let report = tools::scratch_dir().join(format!("schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&report).unwrap();
    let started = Instant::now();
    let run = {
        let root = root.clone();
        let url = url.url();
        let report = report.clone();
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(schemathesis)
                // Schemathesis keeps a cache in its working directory: the report's, not the repository.
                .current_dir(&report)
                .arg("run")
                .arg(root.join(submit::openapi::COMMITTED_PATH))
                .args(["--url", &url])
                .args(["--checks", "all", "--exclude-checks", EXCLUDED_CHECKS])
                .args(["--phases", "examples,coverage,fuzzing,stateful"])
                .args(["--max-examples", MAX_EXAMPLES, "--seed", "20261127", "--workers", "1"])
                .args(["--rate-limit", RATE, "--request-timeout", "15", "--generation-database", "none"])
                .args(["--suppress-health-check", "all", "--no-color", "--report", "junit,ndjson"])
                .arg("--report-dir")
                .arg(&report)
                .env("SCHEMATHESIS_HOOKS", root.join("functions/submit/tests/openapi_fuzz/sigv4_hooks.py"))
                .env("GAMEFORGE_FUZZ_ACCESS_KEY_ID", &backend.access_key_id)
                .env("GAMEFORGE_FUZZ_SECRET_ACCESS_KEY", &backend.secret_access_key)
                .env("GAMEFORGE_FUZZ_SESSION_TOKEN", &backend.session_token)
                .env("GAMEFORGE_FUZZ_REGION", "us-east-1")
                .output()
                .expect("run schemathesis")
        })
        .await
        .unwrap()
    };
    let output = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    println!("{output}");
    println!("schemathesis ran for {:.0} s; report under {}", started.elapsed().as_secs_f64(), report.display());
    println!("answers by status: {:?}", statuses(&report));
    assert!(run.status.success(), "schemathesis found problems:\n{output}");
    // The run reached the function (a run refused at the door would pass every check with its 403s).
    assert!(queue_depth(&config, &deployment.job_queue_url).await.unwrap() > 0, "no job was enqueued:\n{output}");
    let denials = emulator.iam().take_denials();
    assert!(denials.is_empty(), "the function's role was refused: {denials:#?}");
}
