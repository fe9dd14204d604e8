//! IAM enforced in front of the emulator: a deployed role's calls are checked against the policies the template
//! gave it, and a call the template does not allow is denied with AWS's error and reported with the statement
//! that did not allow it.

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use gameforge_localaws::{Deployment, Emulator};

const PREFIX: &str = "gf";

async fn run_instance(ec2: &aws_sdk_ec2::Client, fleet_tag: Option<&str>) -> String {
    let mut run = ec2.run_instances().image_id("ami-12c6146b").min_count(1).max_count(1);
    if let Some(fleet) = fleet_tag {
        run = run.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("gameforge:fleet").value(fleet).build())
                .build(),
        );
    }
    let answer = run.send().await.unwrap();
    answer.instances()[0].instance_id().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_executor_may_drain_the_fleets_instances_and_nothing_else() {
    let emulator = Emulator::start().unwrap();
    let admin = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&admin, PREFIX).await.unwrap();
    let executor = emulator.assume_role(&deployment.role_name("executor"), "executor").await.unwrap();
    let as_executor = aws_sdk_ec2::Client::new(&emulator.sdk_config_as(&executor, "us-east-1").await);
    let admin_ec2 = aws_sdk_ec2::Client::new(&admin);
    let ours = run_instance(&admin_ec2, Some("sdxl")).await;
    let theirs = run_instance(&admin_ec2, None).await;
    let drain = |id: &str| {
        as_executor
            .create_tags()
            .resources(id)
            .tags(Tag::builder().key("gameforge:draining").value("2026-12-04T10:00:00Z").build())
            .send()
    };

    drain(&ours).await.expect("the fleet's own instance can be marked draining");
    let refused = drain(&theirs).await.expect_err("an instance outside the fleet cannot be tagged");
    assert_eq!(aws_sdk_ec2::error::ProvideErrorMetadata::code(&refused), Some("UnauthorizedOperation"));

    let denials = emulator.iam().take_denials();
    assert_eq!(denials.len(), 1, "{denials:#?}");
    let text = denials[0].to_string();
    assert!(text.contains(&format!("instance/{theirs}")), "{text}");
    assert!(
        text.contains("MarkTheFleetsInstancesDraining"),
        "the report names the statement that did not allow it: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_the_template_does_not_allow_is_denied_and_reported() {
    let emulator = Emulator::start().unwrap();
    let admin = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&admin, PREFIX).await.unwrap();
    let executor = emulator.assume_role(&deployment.role_name("executor"), "executor").await.unwrap();
    let config = emulator.sdk_config_as(&executor, "us-east-1").await;

    let sqs = aws_sdk_sqs::Client::new(&config);
    sqs.get_queue_attributes()
        .queue_url(&deployment.job_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("the executor reads the backlog");
    let refused = sqs
        .send_message()
        .queue_url(&deployment.job_queue_url)
        .message_body("{}")
        .send()
        .await
        .expect_err("the executor does not submit jobs");
    assert_eq!(aws_sdk_sqs::error::ProvideErrorMetadata::code(&refused), Some("AccessDenied"));

    let s3 = gameforge_jobs_free_s3(&config);
    let refused = s3
        .put_object()
        .bucket(&deployment.output_bucket)
        .key("images/x.png")
        .body(Vec::new().into())
        .send()
        .await
        .expect_err("the executor writes no images");
    assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&refused), Some("AccessDenied"));

    let denials = emulator.iam().take_denials();
    let calls: Vec<&str> = denials.iter().map(|d| d.call.as_str()).collect();
    assert_eq!(calls, ["sqs:SendMessage", "s3:PutObject"], "{denials:#?}");
    assert!(denials[0].reason.contains("\"RetriesAndDeadLetters\"") && denials[0].reason.contains("do not match"));
    assert!(denials[1].reason.contains("no statement names this action"), "{}", denials[1]);
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "IAM would have denied 1 call(s)")]
async fn an_emulator_fails_its_test_when_a_denial_goes_unnoticed() {
    let emulator = Emulator::start().unwrap();
    let admin = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&admin, PREFIX).await.unwrap();
    let executor = emulator.assume_role(&deployment.role_name("executor"), "executor").await.unwrap();
    let s3 = aws_sdk_s3::Client::new(&emulator.sdk_config_as(&executor, "us-east-1").await);
    // A call whose failure the code under test might swallow (a fallback, a retry) still fails the test.
    let _ = s3.list_buckets().send().await;
}

fn gameforge_jobs_free_s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}
