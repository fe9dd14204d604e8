//! Faults reach the SDK as the typed errors real AWS answers produce.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use gameforge_aws::config::AwsSettings;
use gameforge_localaws::{AwsError, Emulator, Rule};

fn single_attempt() -> AwsSettings {
    AwsSettings { max_attempts: 1, ..Emulator::settings() }
}

#[tokio::test]
async fn an_injected_shortage_reaches_ec2_as_a_typed_error() {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let shortage = emulator.faults().add(
        Rule::for_service("ec2")
            .action("RunInstances")
            .instance_type("g5.xlarge")
            .availability_zone("us-east-1a")
            .fail(AwsError::insufficient_instance_capacity("g5.xlarge", "us-east-1a", &["us-east-1b", "us-east-1c"])),
    );
    let launch = |zone: &'static str| {
        ec2.run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::G5Xlarge)
            .placement(aws_sdk_ec2::types::Placement::builder().availability_zone(zone).build())
            .min_count(1)
            .max_count(1)
            .send()
    };

    let error = launch("us-east-1a").await.unwrap_err();
    let service_error = error.as_service_error().expect("a service error, not a transport failure");
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    assert_eq!(service_error.code(), Some("InsufficientInstanceCapacity"));
    assert!(service_error.message().unwrap().contains("You can currently get g5.xlarge capacity"));
    let raw = error.raw_response().expect("the HTTP answer");
    assert_eq!(raw.status().as_u16(), 500);
    // The answer is a 5xx, which the SDK retries before giving up, as it would against AWS.
    assert_eq!(shortage.hits(), Emulator::settings().max_attempts);

    let launched = launch("us-east-1b").await.expect("other zones still have capacity");
    assert_eq!(launched.instances().len(), 1);
}

#[tokio::test]
async fn quota_errors_are_client_errors_and_not_retried() {
    let emulator = Emulator::start().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&emulator.sdk_config().await);
    let quota =
        emulator.faults().add(Rule::for_service("ec2").action("RunInstances").fail(AwsError::vcpu_limit_exceeded(8)));
    let error = ec2.run_instances().image_id("ami-12c6146b").min_count(1).max_count(1).send().await.unwrap_err();
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    assert_eq!(error.code(), Some("VcpuLimitExceeded"));
    assert_eq!(quota.hits(), 1);
}

#[tokio::test]
async fn dynamodb_throttling_is_its_modeled_exception() {
    let emulator = Emulator::start().unwrap();
    let dynamo = aws_sdk_dynamodb::Client::new(&emulator.sdk_config_with("us-east-1", &single_attempt()).await);
    emulator.faults().add(Rule::for_service("dynamodb").action("PutItem").throttle());
    let error =
        dynamo.put_item().table_name("anything").item("pk", AttributeValue::S("x".into())).send().await.unwrap_err();
    assert!(
        matches!(
            error.as_service_error(),
            Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ProvisionedThroughputExceededException(_))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn sqs_throttling_is_its_modeled_exception() {
    let emulator = Emulator::start().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&emulator.sdk_config_with("us-east-1", &single_attempt()).await);
    let url = sqs.create_queue().queue_name("q").send().await.unwrap().queue_url.unwrap();
    emulator.faults().add(Rule::for_service("sqs").action("SendMessage").throttle());
    let error = sqs.send_message().queue_url(&url).message_body("x").send().await.unwrap_err();
    assert!(
        matches!(
            error.as_service_error(),
            Some(aws_sdk_sqs::operation::send_message::SendMessageError::RequestThrottled(_))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_until_it_passes() {
    let emulator = Emulator::start().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&emulator.sdk_config().await);
    let url = sqs.create_queue().queue_name("q").send().await.unwrap().queue_url.unwrap();
    let throttle = emulator.faults().add(Rule::for_service("sqs").action("SendMessage").times(2).throttle());
    sqs.send_message().queue_url(&url).message_body("x").send().await.expect("the third attempt passes");
    assert_eq!(throttle.hits(), 2);
    assert_eq!(emulator.faults().count("sqs", "SendMessage"), 3);
}

#[tokio::test]
async fn a_hung_attempt_times_out_and_is_retried() {
    let emulator = Emulator::start().unwrap();
    let settings = AwsSettings { attempt_timeout: Duration::from_millis(300), ..Emulator::settings() };
    let sqs = aws_sdk_sqs::Client::new(&emulator.sdk_config_with("us-east-1", &settings).await);
    let url = sqs.create_queue().queue_name("q").send().await.unwrap().queue_url.unwrap();
    let slow =
        emulator.faults().add(Rule::for_service("sqs").action("SendMessage").times(1).delay(Duration::from_secs(3)));
    sqs.send_message().queue_url(&url).message_body("x").send().await.expect("the retry passes");
    // The held-back attempt is still logged as unanswered; the rule saw both attempts arrive.
    assert_eq!((slow.hits(), slow.matched()), (1, 2));
}

#[tokio::test]
async fn server_errors_are_absorbed_by_retries_within_the_attempt_budget() {
    let emulator = Emulator::start().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&emulator.sdk_config().await);
    let url = sqs.create_queue().queue_name("q").send().await.unwrap().queue_url.unwrap();
    emulator.faults().add(Rule::for_service("sqs").action("SendMessage").times(1).fail(AwsError::internal_error()));
    emulator
        .faults()
        .add(Rule::for_service("sqs").action("SendMessage").times(1).fail(AwsError::service_unavailable()));
    sqs.send_message().queue_url(&url).message_body("x").send().await.unwrap();
    let statuses: Vec<u16> = emulator
        .faults()
        .requests()
        .iter()
        .filter(|r| r.action.as_deref() == Some("SendMessage"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![500, 503, 200]);
}

#[tokio::test]
async fn a_bucket_asked_for_in_the_wrong_region_answers_as_s3_does() {
    let emulator = Emulator::start().unwrap();
    let west = emulator.sdk_config_with("us-west-2", &Emulator::settings()).await;
    let east = emulator.sdk_config().await;
    let s3 = |config: &aws_config::SdkConfig| {
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
    };
    s3(&west)
        .create_bucket()
        .bucket("western")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3(&west).put_object().bucket("western").key("k").body(b"x".to_vec().into()).send().await.unwrap();
    let refused = s3(&east).get_object().bucket("western").key("k").send().await.unwrap_err();
    let raw = refused.raw_response().expect("an HTTP answer");
    assert_eq!(raw.status().as_u16(), 301);
    assert_eq!(raw.headers().get("x-amz-bucket-region"), Some("us-west-2"));
}
