//! The submit function's binary under the local Lambda runtime, answering function URL requests against the
//! emulator: 202 and one message per job id, 400 listing every violation, 403 without IAM auth, 429 past the
//! caller's rate; each caller's jobs, ids and image folder its own (another caller's job is a 404, never a 409);
//! results only to the deployment's reply queues. The function runs with its role from the template and is called
//! through an `AWS_IAM` function URL by roles holding the template's SubmitCallerPolicy, all of it enforced.

use std::path::Path;
use std::time::Duration;

use gameforge_localaws::{Deployment, Emulator, FunctionUrl, LambdaHost, RoleCredentials, queue_depth, with_env};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_submit");

struct Rig {
    emulator: Emulator,
    config: aws_config::SdkConfig,
    deployment: Deployment,
    host: LambdaHost,
    function_arn: String,
    timeout: Duration,
    /// Two game backends, each a role with the template's SubmitCallerPolicy.
    alice: RoleCredentials,
    mallory: RoleCredentials,
}

async fn rig(burst: &str) -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let role = emulator.assume_role(&deployment.role_name("submit"), "submit").await.unwrap();
    let mut env = emulator.env_as(&role);
    let deployed = deployment.function_env(&config, "submit").await.unwrap();
    env.extend(with_env(
        with_env(deployed, "GAMEFORGE_RATE_LIMIT_PER_SECOND", "0.2"),
        "GAMEFORGE_RATE_LIMIT_BURST",
        burst,
    ));
    let host = LambdaHost::start(Path::new(BINARY), "submit", &env).unwrap();
    host.wait_ready(Duration::from_secs(30)).await.unwrap();
    let function_arn = deployment.function_arn(&config, "submit").await.unwrap();
    let timeout = deployment.function_timeout(&config, "submit").await.unwrap();
    let callers = deployment.outputs["SubmitCallerPolicyArn"].clone();
    let alice = emulator.role_with_policies("game-backend", &[&callers]).await.unwrap();
    let mallory = emulator.role_with_policies("someone-else", &[&callers]).await.unwrap();
    Rig { emulator, config, deployment, host, function_arn, timeout, alice, mallory }
}

/// A function URL request (payload format 2.0) as AWS would deliver it after verifying the SigV4 signature: for
/// what no real caller can send (an identity that is not a principal's ARN).
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
    fn url(&self) -> FunctionUrl<'_> {
        FunctionUrl::new(&self.emulator, &self.host, &self.function_arn, self.timeout)
    }

    /// `(status, body)` of one request through the function URL.
    async fn call(
        &self,
        method: &str,
        path: &str,
        caller: Option<&RoleCredentials>,
        body: Option<&Value>,
    ) -> (u64, Value) {
        let answer = self.url().request(caller, method, path, body).await.unwrap();
        (u64::from(answer.status), answer.body)
    }

    async fn depth(&self) -> usize {
        queue_depth(&self.config, &self.deployment.job_queue_url).await.unwrap()
    }
}

#[tokio::test]
async fn a_job_is_enqueued_once_per_id_and_an_invalid_one_gets_every_violation() {
    let rig = rig("20").await;
    let job = json!({"job_id": "http-1", "prompt": "a castle", "width": 512, "height": 512, "steps": 20});
    let (status, body) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&job)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!((body["job_id"].as_str(), body["state"].as_str()), (Some("http-1"), Some("queued")));
    let (status, body) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&job)).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(rig.depth().await, 1, "one message per job id");

    // The deployment filled the fields the caller left out.
    let (status, report) = rig.call("GET", "/jobs/http-1", Some(&rig.alice), None).await;
    assert_eq!((status, report["state"].as_str()), (200, Some("queued")), "{report}");
    let messages = aws_sdk_sqs::Client::new(&rig.config)
        .receive_message()
        .queue_url(&rig.deployment.job_queue_url)
        .send()
        .await
        .unwrap();
    let sent: Value = serde_json::from_str(messages.messages()[0].body().unwrap()).unwrap();
    // Images go to the caller's own folder of the deployment's output prefix.
    let output = format!("s3://{}/images/123456789012/assumed-role/game-backend", rig.deployment.output_bucket);
    assert_eq!((sent["model_id"].as_str(), sent["output"].as_str()), (Some("sdxl-base"), Some(output.as_str())));

    let bad = json!({"job_id": "http-2", "prompt": "", "width": 100, "steps": 0, "colour": "red"});
    let (status, body) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&bad)).await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> =
        body["violations"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    for field in ["prompt", "width", "steps", "colour"] {
        assert!(fields.contains(&field), "{field} missing from {body}");
    }
    let elsewhere = json!({"job_id": "http-3", "prompt": "a castle", "output": "s3://someone-elses-bucket/x"});
    let (status, body) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&elsewhere)).await;
    assert_eq!((status, body["violations"][0]["field"].as_str()), (400, Some("output")), "{body}");
    let theirs = format!("s3://{}/images/123456789012/assumed-role/someone-else/x", rig.deployment.output_bucket);
    let into_theirs = json!({"job_id": "http-4", "prompt": "a castle", "output": theirs});
    let (status, body) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&into_theirs)).await;
    assert_eq!((status, body["violations"][0]["field"].as_str()), (400, Some("output")), "{body}");
    assert!(body["violations"][0]["message"].as_str().unwrap().contains("its own folder"), "{body}");
    let conflicting = json!({"job_id": "http-1", "prompt": "a moat"});
    assert_eq!(rig.call("POST", "/jobs", Some(&rig.alice), Some(&conflicting)).await.0, 409);
    let (status, _) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&json!("a castle"))).await;
    assert_eq!(status, 400);
    assert_eq!(rig.depth().await, 1, "nothing invalid was enqueued");
}

#[tokio::test]
async fn unsigned_requests_are_refused_and_callers_see_only_their_jobs() {
    let rig = rig("20").await;
    let job = json!({"job_id": "mine-1", "prompt": "a castle"});
    let (status, body) = rig.call("POST", "/jobs", None, Some(&job)).await;
    assert_eq!(status, 403, "{body}");
    let answer =
        rig.host.invoke(&request("POST", "/jobs", Some("AROAEXAMPLE:session"), Some(&job)), rig.timeout).await.unwrap();
    assert_eq!(answer.response["statusCode"], 403, "a signer that is not a principal's ARN owns nothing: {answer:?}");
    assert_eq!(rig.depth().await, 0);
    assert_eq!(rig.call("POST", "/jobs", Some(&rig.alice), Some(&job)).await.0, 202);
    // Another caller: the id is as unknown as one nobody used, and its own to use.
    let (status, unknown) = rig.call("GET", "/jobs/never-used", Some(&rig.mallory), None).await;
    assert_eq!(status, 404);
    let (status, body) = rig.call("GET", "/jobs/mine-1", Some(&rig.mallory), None).await;
    assert_eq!(
        (status, body["error"].as_str().map(|e| e.replace("mine-1", "never-used"))),
        (404, unknown["error"].as_str().map(String::from))
    );
    assert_eq!(rig.call("POST", "/jobs/mine-1/cancel", Some(&rig.mallory), None).await.0, 404);
    let theirs = json!({"job_id": "mine-1", "prompt": "a moat"});
    let (status, body) = rig.call("POST", "/jobs", Some(&rig.mallory), Some(&theirs)).await;
    assert_eq!(status, 202, "a new job of its own, never a 409 that would reveal mine: {body}");
    assert_eq!(rig.depth().await, 2);
    let (status, report) = rig.call("GET", "/jobs/mine-1", Some(&rig.alice), None).await;
    assert_eq!((status, report["state"].as_str()), (200, Some("queued")));
    let (status, body) = rig.call("POST", "/jobs/mine-1/cancel", Some(&rig.alice), None).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("cancelled")), "{body}");
    let (status, report) = rig.call("GET", "/jobs/mine-1", Some(&rig.alice), None).await;
    assert_eq!((status, report["state"].as_str()), (200, Some("cancelled")));
    assert_eq!(report["result"]["error"]["class"], "cancelled");
    let (status, report) = rig.call("GET", "/jobs/mine-1", Some(&rig.mallory), None).await;
    assert_eq!((status, report["state"].as_str()), (200, Some("queued")), "the other caller's job stays");
    assert_eq!(rig.call("POST", "/jobs/mine-1/cancel", Some(&rig.alice), None).await.0, 409);
    assert_eq!(rig.call("DELETE", "/jobs/mine-1", Some(&rig.alice), None).await.0, 405);
    assert_eq!(rig.call("GET", "/elsewhere", Some(&rig.alice), None).await.0, 404);
}

#[tokio::test]
async fn each_caller_has_its_own_rate_limit() {
    let rig = rig("3").await;
    for _ in 0..3 {
        assert_eq!(rig.call("GET", "/jobs/none", Some(&rig.alice), None).await.0, 404);
    }
    let answer = rig.url().request(Some(&rig.alice), "GET", "/jobs/none", None).await.unwrap();
    assert_eq!(answer.status, 429);
    let retry_after: u64 = answer.headers["retry-after"].as_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    // Another caller is not held back by the first one's burst.
    assert_eq!(rig.call("GET", "/jobs/none", Some(&rig.mallory), None).await.0, 404);
}

#[tokio::test]
async fn results_go_only_to_reply_queues_of_the_deployment() {
    let rig = rig("20").await;
    let sqs = aws_sdk_sqs::Client::new(&rig.config);
    let create = |name: &'static str, tag: Option<&'static str>| {
        let mut create = sqs.create_queue().queue_name(name);
        if let Some(tag) = tag {
            create = create.tags("gameforge:reply-to", tag);
        }
        async move { create.send().await.unwrap().queue_url().unwrap().to_string() }
    };
    let untagged = create("backend-untagged", None).await;
    let tagged = create("backend-results", Some("gf")).await;
    for (id, url, rule) in [
        ("reply-1", untagged.clone(), "is not tagged gameforge:reply-to=gf"),
        ("reply-2", tagged.replace("backend-results", "gone"), "does not exist"),
        ("reply-3", tagged.replace("123456789012", "210987654321"), "account 210987654321"),
    ] {
        let job = json!({"job_id": id, "prompt": "a castle", "reply_to": url});
        let (status, body) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&job)).await;
        assert_eq!((status, body["violations"][0]["field"].as_str()), (400, Some("reply_to")), "{id}: {body}");
        let message = body["violations"][0]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{id}: {body}");
        assert_eq!(
            rig.call("GET", &format!("/jobs/{id}"), Some(&rig.alice), None).await.0,
            404,
            "{id}: nothing recorded"
        );
    }
    assert_eq!(rig.depth().await, 0);
    let job = json!({"job_id": "reply-ok", "prompt": "a castle", "reply_to": tagged});
    assert_eq!(rig.call("POST", "/jobs", Some(&rig.alice), Some(&job)).await.0, 202);
}

#[tokio::test]
async fn only_callers_the_template_allows_reach_the_function() {
    let rig = rig("20").await;
    let job = json!({"job_id": "door-1", "prompt": "a castle"});
    // No policy at all.
    let stranger = rig.emulator.role_with_policies("stranger", &[]).await.unwrap();
    // The policy callers needed before October 2025: the URL alone, not InvokeFunction through it.
    let iam = aws_sdk_iam::Client::new(&rig.config);
    let url_only = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "lambda:InvokeFunctionUrl", "Resource": rig.function_arn,
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}}]});
    let created = iam.create_policy().policy_name("url-only").policy_document(url_only.to_string()).send().await;
    let url_only_arn = created.unwrap().policy().unwrap().arn().unwrap().to_owned();
    let old_style = rig.emulator.role_with_policies("old-style", &[&url_only_arn]).await.unwrap();
    for caller in [&stranger, &old_style] {
        let answer = rig.url().request(Some(caller), "POST", "/jobs", Some(&job)).await.unwrap();
        assert_eq!((answer.status, answer.refused_by_url), (403, true), "{}", caller.arn);
    }
    let denials = rig.emulator.iam().take_denials();
    assert_eq!(denials.len(), 2, "{denials:#?}");
    assert_eq!(denials[1].action, "lambda:InvokeFunction", "the old policy lacks the invoke: {}", denials[1]);
    assert_eq!(rig.depth().await, 0, "the function never ran");
    let (status, body) = rig.call("POST", "/jobs", Some(&rig.alice), Some(&job)).await;
    assert_eq!(status, 202, "{body}");
}
