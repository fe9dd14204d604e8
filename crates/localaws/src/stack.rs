//! Deploys the project's CloudFormation templates to the emulator, as they would be deployed to AWS.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use gameforge_contract::S3Uri;
use gameforge_planner::config::RegionStamp;

use crate::Error;

/// Creates a stack and waits for it; returns its outputs.
pub async fn deploy_stack(
    config: &SdkConfig,
    name: &str,
    template: &str,
    parameters: &[(&str, &str)],
) -> Result<BTreeMap<String, String>, Error> {
    let fail = |reason: String| Error::Stack { stack: name.to_owned(), reason };
    let client = aws_sdk_cloudformation::Client::new(config);
    client
        .create_stack()
        .stack_name(name)
        .template_body(template)
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(key, value)| Parameter::builder().parameter_key(*key).parameter_value(*value).build())
                .collect(),
        ))
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(|e| fail(format!("create: {}", aws_sdk_cloudformation::error::DisplayErrorContext(e))))?;
    for _ in 0..600 {
        let stacks = client
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| fail(format!("describe: {}", aws_sdk_cloudformation::error::DisplayErrorContext(e))))?;
        let stack = stacks.stacks().first().ok_or_else(|| fail("vanished".into()))?;
        match stack.stack_status() {
            Some(StackStatus::CreateComplete) => {
                return Ok(stack
                    .outputs()
                    .iter()
                    .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                    .collect());
            }
            Some(StackStatus::CreateInProgress) | None => tokio::time::sleep(Duration::from_millis(100)).await,
            Some(other) => {
                return Err(fail(format!("{other}: {}", stack.stack_status_reason().unwrap_or("no reason given"))));
            }
        }
    }
    Err(fail("still creating after 60 s".into()))
}

/// A queue's URL as the emulator hands it out. Stack outputs carry real-AWS URLs, so queues are looked up by
/// name.
pub async fn queue_url(config: &SdkConfig, name: &str) -> Result<String, Error> {
    aws_sdk_sqs::Client::new(config)
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| Error::Emulator(format!("queue {name}: {}", aws_sdk_sqs::error::DisplayErrorContext(e))))?
        .queue_url
        .ok_or_else(|| Error::Emulator(format!("queue {name} has no URL")))
}

/// The resources of `infra/gameforge.yaml` as deployed, found by their names and the stack's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub prefix: String,
    pub signals_queue_url: String,
    pub signals_dead_letter_url: String,
    pub control_queue_url: String,
    pub control_dead_letter_url: String,
    pub control_retry_url: String,
    pub job_queue_url: String,
    /// The jobs the CPU tier may serve.
    pub any_tier_queue_url: String,
    pub job_dead_letter_url: String,
    pub dedup_table: String,
    pub ledger_table: String,
    pub jobs_table: String,
    pub submit_rate_table: String,
    pub output_bucket: String,
    /// The home region's worker stamp.
    pub stamp: RegionStamp,
    /// Every output of the stack.
    pub outputs: BTreeMap<String, String>,
}

/// A region's network as an account brings it to the stack: a VPC with a subnet in each of `zones` (none: the
/// region's first three). Returns the VPC and the subnets by zone.
async fn network(config: &SdkConfig, zones: &[&str]) -> Result<(String, BTreeMap<String, String>), Error> {
    let fail = |what: &str, e: String| Error::Emulator(format!("network: {what}: {e}"));
    let ec2 = aws_sdk_ec2::Client::new(config);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.40.0.0/16")
        .send()
        .await
        .map_err(|e| fail("CreateVpc", aws_sdk_ec2::error::DisplayErrorContext(e).to_string()))?;
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_owned();
    let zones: Vec<String> = if zones.is_empty() {
        let known =
            ec2.describe_availability_zones().send().await.map_err(|e| {
                fail("DescribeAvailabilityZones", aws_sdk_ec2::error::DisplayErrorContext(e).to_string())
            })?;
        known.availability_zones().iter().filter_map(|z| z.zone_name()).take(3).map(str::to_owned).collect()
    } else {
        zones.iter().map(|z| z.to_string()).collect()
    };
    let mut subnets = BTreeMap::new();
    for (i, zone) in zones.iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.40.{i}.0/24"))
            .availability_zone(zone.as_str())
            .send()
            .await
            .map_err(|e| fail("CreateSubnet", aws_sdk_ec2::error::DisplayErrorContext(e).to_string()))?;
        subnets.insert(zone.to_owned(), subnet.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_owned());
    }
    Ok((vpc, subnets))
}

/// Deploys `infra/gameforge.yaml` in `config`'s region with `parameters` and the region's network; returns the
/// outputs and the worker stamp they describe.
async fn deploy_region(
    config: &SdkConfig,
    prefix: &str,
    zones: &[&str],
    parameters: &[(&str, &str)],
) -> Result<(BTreeMap<String, String>, RegionStamp), Error> {
    let fail = |reason: String| Error::Stack { stack: prefix.to_owned(), reason };
    let path = crate::tools::repo_root().join("infra/gameforge.yaml");
    let template = std::fs::read_to_string(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let (vpc, subnets) = network(config, zones).await?;
    let subnet_list = subnets.values().cloned().collect::<Vec<_>>().join(",");
    let mut all: Vec<(&str, &str)> = vec![("Prefix", prefix), ("VpcId", &vpc), ("SubnetIds", &subnet_list)];
    all.extend_from_slice(parameters);
    let outputs = deploy_stack(config, prefix, &template, &all).await?;
    let output = |key: &str| outputs.get(key).cloned().ok_or_else(|| fail(format!("no output {key}")));
    let stamp = RegionStamp {
        region: config.region().map(|r| r.to_string()).unwrap_or_default(),
        ecs_cluster: output("EcsClusterName")?,
        ecs_service: output("EcsServiceName")?,
        task_definition: output("TaskDefinitionFamily")?,
        launch_template: output("LaunchTemplateName")?,
        subnets,
        model_location: S3Uri::parse(&output("ModelLocation")?).map_err(|e| fail(e.to_string()))?,
    };
    Ok((outputs, stamp))
}

/// A standby region's stack, with subnets in `zones` (none: the region's first three): a worker stamp whose
/// workers use the home region's queue and tables, and rules that forward the region's events to the home
/// region's bus.
pub async fn deploy_standby(
    base: &SdkConfig,
    region: &str,
    prefix: &str,
    home_region: &str,
    zones: &[&str],
) -> Result<RegionStamp, Error> {
    deploy_standby_with(base, region, prefix, home_region, zones, &[]).await
}

/// [`deploy_standby`] with more of the template's parameters (`CpuTier`, say).
pub async fn deploy_standby_with(
    base: &SdkConfig,
    region: &str,
    prefix: &str,
    home_region: &str,
    zones: &[&str],
    extra: &[(&str, &str)],
) -> Result<RegionStamp, Error> {
    let config = base.to_builder().region(Region::new(region.to_owned())).build();
    let parameters = [&[("Role", "standby"), ("HomeRegion", home_region)], extra].concat();
    let (_, stamp) = deploy_region(&config, prefix, zones, &parameters).await?;
    Ok(stamp)
}

impl Deployment {
    /// Deploys the project's template under `prefix` (the stack is named after it), with the fleet of
    /// `infra/fleet.json`. The functions' code bucket is made first, as a real deployment makes it to upload
    /// cargo-lambda's zips; the emulator cannot run the functions, so no code goes in.
    pub async fn deploy(config: &SdkConfig, prefix: &str) -> Result<Self, Error> {
        Self::deploy_with_zones(config, prefix, &[]).await
    }

    /// [`Deployment::deploy`] with the home stamp's subnets in `zones`.
    pub async fn deploy_with_zones(config: &SdkConfig, prefix: &str, zones: &[&str]) -> Result<Self, Error> {
        Self::deploy_with(config, prefix, zones, &[]).await
    }

    /// [`Deployment::deploy_with_zones`] with more of the template's parameters (`CpuTier`, say).
    pub async fn deploy_with(
        config: &SdkConfig,
        prefix: &str,
        zones: &[&str],
        extra: &[(&str, &str)],
    ) -> Result<Self, Error> {
        let fail = |reason: String| Error::Stack { stack: prefix.to_owned(), reason };
        let path = crate::tools::repo_root().join("infra/fleet.json");
        let fleet = std::fs::read_to_string(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let artifacts = format!("{prefix}-artifacts");
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build());
        s3.create_bucket()
            .bucket(&artifacts)
            .send()
            .await
            .map_err(|e| fail(format!("artifact bucket: {}", aws_sdk_s3::error::DisplayErrorContext(e))))?;
        let (outputs, stamp) = deploy_region(
            config,
            prefix,
            zones,
            // The emulator cannot run Lambda: the tests and the local run host the functions and feed them.
            &[
                &[
                    ("Role", "home"),
                    ("HomeRegion", &region),
                    ("ArtifactBucket", &artifacts),
                    ("FleetConfig", &fleet),
                    ("EventSourcesEnabled", "false"),
                ],
                extra,
            ]
            .concat(),
        )
        .await?;
        let output = |key: &str| outputs.get(key).cloned().ok_or_else(|| fail(format!("no output {key}")));
        Ok(Self {
            prefix: prefix.to_owned(),
            signals_queue_url: queue_url(config, &format!("{prefix}-signals")).await?,
            signals_dead_letter_url: queue_url(config, &format!("{prefix}-signals-dlq")).await?,
            control_queue_url: queue_url(config, &format!("{prefix}-control.fifo")).await?,
            control_dead_letter_url: queue_url(config, &format!("{prefix}-control-dlq.fifo")).await?,
            control_retry_url: queue_url(config, &format!("{prefix}-control-retry")).await?,
            job_queue_url: queue_url(config, &format!("{prefix}-jobs")).await?,
            any_tier_queue_url: queue_url(config, &format!("{prefix}-jobs-any-tier")).await?,
            job_dead_letter_url: queue_url(config, &format!("{prefix}-jobs-dlq")).await?,
            dedup_table: output("SignalDedupTableName")?,
            ledger_table: output("LedgerTableName")?,
            jobs_table: output("JobsTableName")?,
            submit_rate_table: output("SubmitRateLimitTableName")?,
            output_bucket: output("OutputBucketName")?,
            stamp,
            outputs,
        })
    }

    /// A deployed function's environment, exactly as the template set it (`function`: `on-signal`,
    /// `executor`, `submit`). Queue URLs in it are AWS's form; the SDK reaches them through the emulator's
    /// endpoint all the same.
    pub async fn function_env(&self, config: &SdkConfig, function: &str) -> Result<Vec<(String, String)>, Error> {
        let answer = self.function_configuration(config, function).await?;
        let variables = answer.environment().and_then(|e| e.variables()).cloned().unwrap_or_default();
        Ok(variables.into_iter().collect())
    }

    /// A deployed function's timeout (`function`: `on-signal`, `executor`, `submit`): the deadline Lambda gives
    /// each of its invocations.
    pub async fn function_timeout(&self, config: &SdkConfig, function: &str) -> Result<Duration, Error> {
        let answer = self.function_configuration(config, function).await?;
        Ok(Duration::from_secs(answer.timeout().unwrap_or(3).max(1) as u64))
    }

    /// The deployed function's ARN (what a function URL's IAM check names).
    pub async fn function_arn(&self, config: &SdkConfig, function: &str) -> Result<String, Error> {
        let answer = self.function_configuration(config, function).await?;
        Ok(answer.function_arn().unwrap_or_default().to_owned())
    }

    async fn function_configuration(
        &self,
        config: &SdkConfig,
        function: &str,
    ) -> Result<aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput, Error> {
        let name = format!("{}-{function}", self.prefix);
        aws_sdk_lambda::Client::new(config)
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .map_err(|e| Error::Emulator(format!("function {name}: {}", aws_sdk_lambda::error::DisplayErrorContext(e))))
    }

    /// The name of a role the template made in the home region (`role`: `on-signal`, `executor`, `submit`,
    /// `worker-task`, `worker-instance`…).
    pub fn role_name(&self, role: &str) -> String {
        format!("{}-{role}-{}", self.prefix, self.stamp.region)
    }

    /// The worker container's environment in the home stamp's task definition, exactly as the template set it.
    pub async fn worker_env(&self, config: &SdkConfig) -> Result<Vec<(String, String)>, Error> {
        task_environment(config, &self.stamp).await
    }
}

/// The worker container's environment in a stamp's task definition (in the stamp's region), exactly as the
/// template set it.
pub async fn task_environment(base: &SdkConfig, stamp: &RegionStamp) -> Result<Vec<(String, String)>, Error> {
    family_environment(base, &stamp.region, &stamp.task_definition).await
}

/// The environment of a task definition `family` in `region` (the CPU tier's worker, say).
pub async fn family_environment(base: &SdkConfig, region: &str, family: &str) -> Result<Vec<(String, String)>, Error> {
    let config = base.to_builder().region(Region::new(region.to_owned())).build();
    let described =
        aws_sdk_ecs::Client::new(&config).describe_task_definition().task_definition(family).send().await.map_err(
            |e| Error::Emulator(format!("task definition {family}: {}", aws_sdk_ecs::error::DisplayErrorContext(e))),
        )?;
    let containers = described.task_definition().map(|t| t.container_definitions()).unwrap_or_default();
    Ok(containers
        .iter()
        .flat_map(|c| c.environment())
        .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value()?.to_owned())))
        .collect())
}

/// `env` with `name` set to `value`, replacing what the template set.
pub fn with_env(mut env: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_owned()));
    env
}
