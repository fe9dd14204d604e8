//! `infra/gameforge.yaml` deployed to the emulator as a user deploys it: every function's environment, read back
//! from the deployed function, names resources the stack made, is complete for that function's own settings
//! reader, and every queue that feeds a function does so through an event source mapping that reports partial
//! batch failures, with a visibility timeout the function's timeout fits six times into. Every region gets a
//! worker stamp, and a standby's workers and event rules work for the home region.

use std::collections::BTreeMap;

use aws_config::Region;
use executor::aws::{AwsClock, AwsWorld};
use gameforge_engine::ports::Orchestrator;
use gameforge_localaws::{Deployment, Emulator, deploy_standby};

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
            } else if name == "GAMEFORGE_OUTPUT_PREFIX" {
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
    assert_eq!(deployment.outputs["DashboardName"], "gf-us-east-1");
    assert!(deployment.outputs["AlarmTopicArn"].ends_with(":gf-alarms"));
}

/// A task definition's environment, by name.
async fn task_environment(ecs: &aws_sdk_ecs::Client, family: &str) -> BTreeMap<String, String> {
    let described = ecs.describe_task_definition().task_definition(family).send().await.unwrap();
    let container = &described.task_definition().unwrap().container_definitions()[0];
    container.environment().iter().map(|kv| (kv.name().unwrap().to_string(), kv.value().unwrap().to_string())).collect()
}

#[tokio::test]
async fn every_region_gets_a_worker_stamp_and_a_standby_works_for_the_home_region() {
    let (_emulator, config, deployment) = deployed().await;
    let standby = deploy_standby(&config, "us-west-2", "gf", "us-east-1", &[]).await.unwrap();
    for stamp in [&deployment.stamp, &standby] {
        let regional = config.to_builder().region(Region::new(stamp.region.clone())).build();
        let ecs = aws_sdk_ecs::Client::new(&regional);
        let services =
            ecs.describe_services().cluster(&stamp.ecs_cluster).services(&stamp.ecs_service).send().await.unwrap();
        assert_eq!(services.services()[0].desired_count(), 0, "{}: scaled by the executor from zero", stamp.region);
        let env = task_environment(&ecs, &stamp.task_definition).await;
        // Every region's workers take jobs from the home region's queue and record them in its table.
        assert_eq!(
            env["GAMEFORGE_JOB_QUEUE_URL"], "https://sqs.us-east-1.amazonaws.com/123456789012/gf-jobs",
            "{}",
            stamp.region
        );
        assert_eq!(
            env["GAMEFORGE_JOBS_TABLE"], "arn:aws:dynamodb:us-east-1:123456789012:table/gf-jobs",
            "{}",
            stamp.region
        );
        assert_eq!(env["GAMEFORGE_MODEL"], stamp.model_location.as_str().trim_end_matches('/'));
        let ec2 = aws_sdk_ec2::Client::new(&regional);
        let templates = ec2.describe_launch_templates().launch_template_names(&stamp.launch_template).send().await;
        assert_eq!(templates.unwrap().launch_templates().len(), 1, "{}", stamp.region);
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&regional).force_path_style(true).build());
        s3.head_bucket().bucket(stamp.model_location.bucket()).send().await.unwrap();
        assert_eq!(stamp.subnets.len(), 3);
    }
    // The standby has no queues of its own, and its rules hand its region's events to the home region's bus.
    let west = config.to_builder().region(Region::new("us-west-2")).build();
    let queues = aws_sdk_sqs::Client::new(&west).list_queues().queue_name_prefix("gf-").send().await.unwrap();
    assert!(queues.queue_urls().is_empty(), "{:?}", queues.queue_urls());
    let events = aws_sdk_eventbridge::Client::new(&west);
    let rules = events.list_rules().name_prefix("gf-").send().await.unwrap();
    assert_eq!(rules.rules().len(), 9);
    for rule in rules.rules() {
        let targets = events.list_targets_by_rule().rule(rule.name().unwrap()).send().await.unwrap();
        let arns: Vec<&str> = targets.targets().iter().map(|t| t.arn()).collect();
        assert_eq!(arns, ["arn:aws:events:us-east-1:123456789012:event-bus/default"], "{:?}", rule.name());
    }
}

/// With a `CpuTier`, every way in routes alike: the jobs the tier could serve go to the any-tier queue, the rest to
/// the job queue (the client library configured from the stack's outputs as the CLI's `--stack` does, under
/// GameBackendPolicy); submission, the executor's backlog and every worker stamp are given the queue.
#[tokio::test]
async fn with_a_cpu_tier_the_jobs_it_could_serve_go_to_the_any_tier_queue() {
    use gameforge_contract::{GenerationJob, S3Uri};
    use gameforge_jobs::{Client, ClientSettings};

    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/scenarios/total-gpu-shortage.json");
    let scenario: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(scenario).unwrap()).unwrap();
    let mut tier = scenario["fleet_patch"]["cpu_tier"].clone();
    tier["ecs_service"] = "gf-sdxl-cpu-worker".into();
    let tier = tier.to_string();
    let deployment = Deployment::deploy_with(&config, "gf", &[], &[("CpuTier", &tier)]).await.unwrap();
    let any_tier_queue = "https://sqs.us-east-1.amazonaws.com/123456789012/gf-jobs-any-tier";
    assert_eq!(deployment.outputs["CpuWorkerServiceName"], "gf-sdxl-cpu-worker");

    let submit = deployment.function_env(&config, "submit").await.unwrap();
    let routing = submit::settings::Settings::from_lookup(lookup(&submit)).unwrap().any_tier.expect("routes");
    assert_eq!(routing.queue_url.rsplit('/').next(), Some("gf-jobs-any-tier"));
    let executor = deployment.function_env(&config, "executor").await.unwrap();
    let executor = executor::settings::Settings::from_lookup(lookup(&executor)).unwrap();
    assert!(executor.resources.any_tier_queue_url.is_some(), "its jobs count in the backlog");
    let cpu_tier = executor.fleet.cpu_tier.clone().expect("the executor runs the stack's tier");
    let ecs = aws_sdk_ecs::Client::new(&config);
    let env = task_environment(&ecs, &deployment.stamp.task_definition).await;
    assert_eq!(env["GAMEFORGE_ANY_TIER_QUEUE_URL"], any_tier_queue, "GPU workers read it too");

    // The tier's own worker: no GPU, the tier's settings (its role is worker/tests/serve.rs's); scaled from zero
    // by the executor's role. (The emulator keeps neither a task definition's size nor its roles.)
    let described = ecs.describe_task_definition().task_definition("gf-sdxl-cpu-worker").send().await.unwrap();
    let task = described.task_definition().unwrap();
    let container = &task.container_definitions()[0];
    assert!(container.resource_requirements().is_empty(), "no GPU");
    let cpu_env = task_environment(&ecs, "gf-sdxl-cpu-worker").await;
    assert_eq!(cpu_env["GAMEFORGE_ANY_TIER_QUEUE_URL"], any_tier_queue);
    assert_eq!(
        gameforge_planner::cpu_tier::CpuTier::from_json(&cpu_env["GAMEFORGE_CPU_TIER"]).unwrap(),
        cpu_tier,
        "the worker judges jobs by the tier the executor runs"
    );
    let executor_role = emulator.assume_role(&deployment.role_name("executor"), "executor").await.unwrap();
    let executor_config = emulator.sdk_config_as(&executor_role, "us-east-1").await;
    let world = AwsWorld::new(executor_config, executor.resources.clone(), AwsClock::System);
    world.set_service_size(&deployment.stamp, &cpu_tier.ecs_service, 2).await.unwrap();
    let services = ecs
        .describe_services()
        .cluster(&deployment.stamp.ecs_cluster)
        .services(&cpu_tier.ecs_service)
        .send()
        .await
        .unwrap();
    assert_eq!(services.services()[0].desired_count(), 2);

    let role = emulator.role_with_policies("game-backend", &[&deployment.outputs["GameBackendPolicyArn"]]).await;
    let backend = emulator.sdk_config_as(&role.unwrap(), "us-east-1").await;
    let outputs = &deployment.outputs;
    let settings = ClientSettings::from_lookup(|name| match name {
        "GAMEFORGE_JOB_QUEUE_URL" => outputs.get("JobQueueUrl").cloned(),
        "GAMEFORGE_JOBS_TABLE" => outputs.get("JobsTableArn").cloned(),
        "GAMEFORGE_ANY_TIER_QUEUE_URL" => outputs.get("AnyTierJobQueueUrl").cloned(),
        "GAMEFORGE_CPU_TIER" => outputs.get("CpuTier").cloned(),
        _ => None,
    })
    .unwrap();
    assert_eq!(settings.any_tier, Some(routing), "the stack tells the library what it told submission");
    let client = Client::new(&backend, &settings);
    let output = S3Uri::parse(&format!("s3://{}/images", deployment.output_bucket)).unwrap();
    let mut small = GenerationJob::new("sprite", "a potion bottle", "sdxl-turbo", output.clone());
    (small.width, small.height, small.steps, small.guidance) = (512, 512, 4, 0.0);
    let mut large = GenerationJob::new("poster", "a castle at dawn", "sdxl-base", output);
    (large.width, large.height, large.steps, large.guidance) = (1024, 1024, 30, 5.0);
    for job in [&small, &large] {
        client.submit(job).await.unwrap();
    }
    // A job only a GPU may serve says why in its status while it waits.
    let waiting = client.status("poster").await.unwrap().unwrap().gpu_only.expect("a reason");
    assert!(waiting.contains("1.05 megapixels is larger than the CPU tier's 0.27"), "{waiting}");
    assert_eq!(client.status("sprite").await.unwrap().unwrap().gpu_only, None);
    let sqs = aws_sdk_sqs::Client::new(&config);
    for (queue, expected) in [(any_tier_queue, "sprite"), (deployment.job_queue_url.as_str(), "poster")] {
        let got = sqs.receive_message().queue_url(queue).max_number_of_messages(10).send().await.unwrap();
        let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
        assert_eq!(bodies.len(), 1, "{queue}: {bodies:?}");
        assert!(bodies[0].contains(&format!("\"job_id\":\"{expected}\"")), "{queue}: {bodies:?}");
    }
}

/// The deployment guide's `tools/deploy/fleet_config.py` writes the executor's fleet file from the stacks it
/// deployed: each region's stamp as the stacks describe it, the zones of its subnets from EC2, and the rest from
/// `infra/fleet.json`; the executor's own reader accepts it.
#[tokio::test]
async fn the_fleet_file_is_written_from_the_deployed_stacks() {
    let (emulator, config, deployment) = deployed().await;
    let standby = deploy_standby(&config, "us-west-2", "gf", "us-east-1", &["us-west-2a", "us-west-2b"]).await.unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |standby: &str| {
        std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tools/deploy/fleet_config.py"))
            .args(["--stack", "gf", "--home", "us-east-1", "--standby", standby])
            .envs(emulator.env())
            .output()
            .unwrap()
    };
    let out = run("us-west-2");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fleet = gameforge_planner::FleetConfig::from_json(&out.stdout).unwrap();
    let stamps = serde_json::to_value(&fleet.regions).unwrap();
    assert_eq!(stamps, serde_json::to_value([&deployment.stamp, &standby]).unwrap());
    assert_eq!(fleet.home_region, "us-east-1");
    assert_eq!(fleet.fleet, "sdxl", "the stack's FleetName");
    let written = out.stdout.clone();

    let out = run("eu-west-1");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("eu-west-1: stack gf"), "{stderr}");

    // The guide's next step: the G-instance quotas of every region, against what the fleet may need.
    let file = std::env::temp_dir().join(format!("gameforge-fleet-{}.json", std::process::id()));
    std::fs::write(&file, &written).unwrap();
    let check = || {
        std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tools/deploy/check_quotas.py"))
            .arg("--fleet")
            .arg(&file)
            .envs(emulator.env())
            .output()
            .unwrap()
    };
    let unknown = check();
    assert_eq!(unknown.status.code(), Some(2), "no quota is known yet: {}", String::from_utf8_lossy(&unknown.stderr));
    for region in ["us-east-1", "us-west-2"] {
        for code in ["L-DB2E81BA", "L-3819A6DF"] {
            emulator.faults().set_service_quota(region, "ec2", code, 256.0);
        }
    }
    let fine = check();
    assert!(fine.status.success(), "{}", String::from_utf8_lossy(&fine.stderr));
    let stdout = String::from_utf8_lossy(&fine.stdout);
    assert!(stdout.contains("us-west-2 spot: All G and VT Spot Instance Requests (L-3819A6DF) 256 vCPUs"), "{stdout}");
    // A new account's spot quota.
    emulator.faults().set_service_quota("us-east-1", "ec2", "L-3819A6DF", 0.0);
    let short = check();
    let _ = std::fs::remove_file(&file);
    assert_eq!(short.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("raise L-3819A6DF in us-east-1 to "), "{stderr}");
}

/// The deployment guide's `tools/deploy/teardown.py` removes what CloudFormation cannot by itself (the
/// executor's instances, the buckets' objects) and then every stack, standbys first; without `--yes` it only says
/// what it would do.
#[tokio::test]
async fn teardown_removes_the_fleets_instances_the_buckets_objects_and_every_stack() {
    let (emulator, config, deployment) = deployed().await;
    deploy_standby(&config, "us-west-2", "gf", "us-east-1", &["us-west-2a"]).await.unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let model_bucket = deployment.stamp.model_location.bucket().to_owned();
    for (bucket, key) in [(&deployment.output_bucket, "images/a.png"), (&model_bucket, "sdxl/model_index.json")] {
        s3.put_object().bucket(bucket).key(key).body(b"x".to_vec().into()).send().await.unwrap();
    }
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let tag = aws_sdk_ec2::types::Tag::builder().key("gameforge:fleet").value("sdxl").build();
    let launched = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .tags(tag)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instance = launched.instances()[0].instance_id().unwrap().to_owned();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |extra: &[&str]| {
        std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tools/deploy/teardown.py"))
            .args(["--stack", "gf", "--home", "us-east-1", "--standby", "us-west-2"])
            .args(extra)
            .envs(emulator.env())
            .output()
            .unwrap()
    };
    let dry = run(&[]);
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(said.contains(&format!("(dry run) us-east-1: terminate 1 instance(s) of fleet sdxl {instance}")), "{said}");
    let cloudformation = aws_sdk_cloudformation::Client::new(&config);
    assert!(cloudformation.describe_stacks().stack_name("gf").send().await.is_ok(), "a dry run deletes nothing");

    let done = run(&["--yes"]);
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{said}\n{}", String::from_utf8_lossy(&done.stderr));
    let order: Vec<&str> = said.lines().filter(|l| l.contains("stack gf deleted")).collect();
    assert_eq!(order, ["us-west-2: stack gf deleted", "us-east-1: stack gf deleted"], "{said}");
    for region in ["us-east-1", "us-west-2"] {
        let regional = aws_sdk_cloudformation::Client::new(&config.to_builder().region(Region::new(region)).build());
        let left = regional.describe_stacks().stack_name("gf").send().await;
        let gone = match left {
            Err(_) => true,
            Ok(answer) => {
                answer.stacks().iter().all(|s| s.stack_status().is_some_and(|st| st.as_str() == "DELETE_COMPLETE"))
            }
        };
        assert!(gone, "{region}");
    }
    let state = ec2.describe_instances().instance_ids(&instance).send().await.unwrap();
    let name = state.reservations()[0].instances()[0].state().and_then(|s| s.name()).map(|n| n.as_str().to_owned());
    assert_eq!(name.as_deref(), Some("terminated"));
}
