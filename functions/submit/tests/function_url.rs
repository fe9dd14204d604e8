//! The submit function's binary under the local Lambda runtime, answering function URL requests against the
//! emulator: 202 and one message per job id, 400 listing every violation, 403 without IAM auth, 429 past the
//! caller's rate, status and cancellation visible only to the submitter.

use std::path::Path;
use std::time::Duration;

use gameforge_localaws::{Deployment, Emulator, LambdaHost, queue_depth, with_env};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_submit");
const ALICE: &str = "arn:aws:iam::111122223333:role/game-backend";
const MALLORY: &str = "arn:aws:iam::111122223333:role/someone-else";

struct Rig {
    _emulator: Emulator,
    config: aws_config::SdkConfig,
    deployment: Deployment,
    host: LambdaHost,
}

async fn rig(burst: &str) -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let mut env = emulator.env();
    let deployed = deployment.function_env(&config, "submit").await.unwrap();
    env.extend(with_env(with_env(deployed, "RATE_LIMIT_PER_SECOND", "0.2"), "RATE_LIMIT_BURST", burst));
    let host = LambdaHost::start(Path::new(BINARY), "submit", &env).unwrap();
    host.wait_ready(Duration::from_secs(30)).await.unwrap();
    Rig { _emulator: emulator, config, deployment, host }
}

/// A function URL request (payload format 2.0) as AWS delivers it after verifying the SigV4 signature.
fn request(method: &str, path: &str, caller: Option<&str>, body: Option<&Value>) -> Value {
    let authorizer = caller.map(|arn| {
        json!({"iam": {"accessKey": "AKIAEXAMPLE", "accountId": "111122223333", "callerId": "AROAEXAMPLE:session",
                       "cognitoIdentity": null, "principalOrgId": null, "userArn": arn, "userId": "AROAEXAMPLE"}})
    });
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": "111122223333", "apiId": "abc", "authorizer": authorizer,
            "domainName": "abc.lambda-url.us-east-1.on.aws", "domainPrefix": "abc",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
            "requestId": "r-1", "routeKey": "$default", "stage": "$default", "time": "27/Nov/2026:08:00:00 +0000",
            "timeEpoch": 1_795_680_000_000_u64
        },
        "body": body.map(Value::to_string), "isBase64Encoded": false
    })
}

impl Rig {
    /// `(status, body)` of one request.
    async fn call(&self, method: &str, path: &str, caller: Option<&str>, body: Option<&Value>) -> (u64, Value) {
        let answer = self.host.invoke(&request(method, path, caller, body), Duration::from_secs(30)).await.unwrap();
        let status = answer.response["statusCode"].as_u64().unwrap();
        let body = serde_json::from_str(answer.response["body"].as_str().unwrap()).unwrap();
        (status, body)
    }

    async fn depth(&self) -> usize {
        queue_depth(&self.config, &self.deployment.job_queue_url).await.unwrap()
    }
}

#[tokio::test]
async fn a_job_is_enqueued_once_per_id_and_an_invalid_one_gets_every_violation() {
    let rig = rig("20").await;
    let job = json!({"job_id": "http-1", "prompt": "a castle", "width": 512, "height": 512, "steps": 20});
    let (status, body) = rig.call("POST", "/jobs", Some(ALICE), Some(&job)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!((body["job_id"].as_str(), body["state"].as_str()), (Some("http-1"), Some("queued")));
    let (status, body) = rig.call("POST", "/jobs", Some(ALICE), Some(&job)).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(rig.depth().await, 1, "one message per job id");

    // The deployment filled the fields the caller left out.
    let (status, report) = rig.call("GET", "/jobs/http-1", Some(ALICE), None).await;
    assert_eq!((status, report["state"].as_str()), (200, Some("queued")), "{report}");
    let messages = aws_sdk_sqs::Client::new(&rig.config)
        .receive_message()
        .queue_url(&rig.deployment.job_queue_url)
        .send()
        .await
        .unwrap();
    let sent: Value = serde_json::from_str(messages.messages()[0].body().unwrap()).unwrap();
    let output = format!("s3://{}/images", rig.deployment.output_bucket);
    assert_eq!((sent["model_id"].as_str(), sent["output"].as_str()), (Some("sdxl-base"), Some(output.as_str())));

    let bad = json!({"job_id": "http-2", "prompt": "", "width": 100, "steps": 0, "colour": "red"});
    let (status, body) = rig.call("POST", "/jobs", Some(ALICE), Some(&bad)).await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> =
        body["violations"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    for field in ["prompt", "width", "steps", "colour"] {
        assert!(fields.contains(&field), "{field} missing from {body}");
    }
    let elsewhere = json!({"job_id": "http-3", "prompt": "a castle", "output": "s3://someone-elses-bucket/x"});
    let (status, body) = rig.call("POST", "/jobs", Some(ALICE), Some(&elsewhere)).await;
    assert_eq!((status, body["violations"][0]["field"].as_str()), (400, Some("output")), "{body}");
    let conflicting = json!({"job_id": "http-1", "prompt": "a moat"});
    assert_eq!(rig.call("POST", "/jobs", Some(ALICE), Some(&conflicting)).await.0, 409);
    let (status, _) = rig.call("POST", "/jobs", Some(ALICE), Some(&json!("a castle"))).await;
    assert_eq!(status, 400);
    assert_eq!(rig.depth().await, 1, "nothing invalid was enqueued");
}

#[tokio::test]
async fn unsigned_requests_are_refused_and_callers_see_only_their_jobs() {
    let rig = rig("20").await;
    let job = json!({"job_id": "mine-1", "prompt": "a castle"});
    let (status, body) = rig.call("POST", "/jobs", None, Some(&job)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(rig.depth().await, 0);
    assert_eq!(rig.call("POST", "/jobs", Some(ALICE), Some(&job)).await.0, 202);
    assert_eq!(rig.call("GET", "/jobs/mine-1", Some(MALLORY), None).await.0, 404);
    assert_eq!(rig.call("POST", "/jobs/mine-1/cancel", Some(MALLORY), None).await.0, 404);
    let (status, body) = rig.call("POST", "/jobs/mine-1/cancel", Some(ALICE), None).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("cancelled")), "{body}");
    let (status, report) = rig.call("GET", "/jobs/mine-1", Some(ALICE), None).await;
    assert_eq!((status, report["state"].as_str()), (200, Some("cancelled")));
    assert_eq!(report["result"]["error"]["class"], "cancelled");
    assert_eq!(rig.call("POST", "/jobs/mine-1/cancel", Some(ALICE), None).await.0, 409);
    assert_eq!(rig.call("DELETE", "/jobs/mine-1", Some(ALICE), None).await.0, 405);
    assert_eq!(rig.call("GET", "/elsewhere", Some(ALICE), None).await.0, 404);
}

#[tokio::test]
async fn each_caller_has_its_own_rate_limit() {
    let rig = rig("3").await;
    for _ in 0..3 {
        assert_eq!(rig.call("GET", "/jobs/none", Some(ALICE), None).await.0, 404);
    }
    let answer =
        rig.host.invoke(&request("GET", "/jobs/none", Some(ALICE), None), Duration::from_secs(30)).await.unwrap();
    assert_eq!(answer.response["statusCode"], 429);
    let retry_after: u64 = answer.response["headers"]["retry-after"].as_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    // Another caller is not held back by the first one's burst.
    assert_eq!(rig.call("GET", "/jobs/none", Some(MALLORY), None).await.0, 404);
}
