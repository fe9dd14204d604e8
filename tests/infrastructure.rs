//! `infra/gameforge.yaml` deployed to the emulator as a user deploys it: every function's environment, read back
//! from the deployed function, names resources the stack made, is complete for that function's own settings
//! reader, and every queue that feeds a function does so through an event source mapping that reports partial
//! batch failures, with a visibility timeout the function's timeout fits six times into.

use std::collections::BTreeMap;

use gameforge_localaws::{Deployment, Emulator};

async fn deployed() -> (Emulator, aws_config::SdkConfig, Deployment) {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    (emulator, config, deployment)
}

fn lookup(env: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn every_function_is_configured_with_the_resources_the_stack_made() {
    let (_emulator, config, deployment) = deployed().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    for function in ["on-signal", "executor", "submit"] {
        let env = deployment.function_env(&config, function).await.unwrap();
        assert!(!env.is_empty(), "{function} has no environment");
        for (name, value) in &env {
            if name.ends_with("_URL") {
                let queue = value.rsplit('/').next().unwrap();
                assert!(queue.starts_with("gf-"), "{function} {name}={value}");
                sqs.get_queue_url().queue_name(queue).send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            } else if name.ends_with("_TABLE") {
                dynamodb.describe_table().table_name(value).send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            } else if name == "OUTPUT_PREFIX" {
                let bucket = value.trim_start_matches("s3://").split('/').next().unwrap();
                assert_eq!(bucket, deployment.output_bucket);
                s3.head_bucket().bucket(bucket).send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
        }
        // Each function's own reader accepts what the template gives it.
        match function {
            "on-signal" => drop(on_signal::settings::Settings::from_lookup(lookup(&env)).unwrap()),
            "executor" => drop(executor::settings::Settings::from_lookup(lookup(&env)).unwrap()),
            _ => drop(submit::settings::Settings::from_lookup(lookup(&env)).unwrap()),
        }
    }
}

#[tokio::test]
async fn queues_feed_functions_through_mappings_that_report_partial_failures() {
    let (_emulator, config, deployment) = deployed().await;
    let lambda = aws_sdk_lambda::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mappings = lambda.list_event_source_mappings().send().await.unwrap();
    let mut fed: BTreeMap<String, String> = BTreeMap::new();
    for mapping in mappings.event_source_mappings() {
        let source = mapping.event_source_arn().unwrap().rsplit(':').next().unwrap().to_string();
        let function = mapping.function_arn().unwrap().rsplit(':').next().unwrap().to_string();
        assert!(
            mapping.function_response_types().iter().any(|t| t.as_str() == "ReportBatchItemFailures"),
            "{source} → {function}"
        );
        let url = sqs.get_queue_url().queue_name(&source).send().await.unwrap().queue_url.unwrap();
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .unwrap();
        let visibility: i32 = attributes.attributes().unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout]
            .parse()
            .unwrap();
        let timeout =
            lambda.get_function_configuration().function_name(&function).send().await.unwrap().timeout.unwrap();
        assert!(visibility >= 6 * timeout, "{source}: visibility {visibility} s for a {timeout} s function");
        assert_eq!(mapping.state(), Some("Disabled"), "the emulator's deployment leaves them off");
        fed.insert(source, function);
    }
    let expected: BTreeMap<String, String> =
        [("gf-signals", "gf-on-signal"), ("gf-control.fifo", "gf-executor"), ("gf-control-retry", "gf-executor")]
            .into_iter()
            .map(|(q, f)| (q.to_string(), f.to_string()))
            .collect();
    assert_eq!(fed, expected);
    assert_eq!(deployment.outputs["SubmitFunctionName"], "gf-submit");
}
