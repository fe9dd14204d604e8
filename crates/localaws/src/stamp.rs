//! A region's worker stamp in the emulator, made the way the infrastructure makes it on AWS: a VPC with one
//! subnet per zone, the worker launch template, the ECS cluster, task definition and service, and the model
//! bucket with the weights' marker file. It is returned as the fleet configuration's stamp of the region.

use std::collections::BTreeMap;

use aws_config::{Region, SdkConfig};
use aws_sdk_ecs::types::{ContainerDefinition, ResourceRequirement, ResourceType};

use gameforge_contract::S3Uri;
use gameforge_planner::config::RegionStamp;

use crate::Error;

fn fail(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Emulator(format!("stamp: {what}: {e}"))
}

/// Creates a stamp in `region` with subnets in `zones`. With `with_model` false the model is missing, so the
/// stamp is not ready.
pub async fn create_stamp(
    base: &SdkConfig,
    region: &str,
    zones: &[&str],
    with_model: bool,
) -> Result<RegionStamp, Error> {
    let config = base.to_builder().region(Region::new(region.to_owned())).build();
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.40.0.0/16")
        .send()
        .await
        .map_err(|e| fail("CreateVpc", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_owned();
    let mut subnets = BTreeMap::new();
    for (i, zone) in zones.iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.40.{i}.0/24"))
            .availability_zone(*zone)
            .send()
            .await
            .map_err(|e| fail("CreateSubnet", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
        subnets.insert((*zone).to_owned(), subnet.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_owned());
    }
    // Any image the emulator knows in this region stands in for the ECS-optimized GPU AMI.
    let images = ec2
        .describe_images()
        .send()
        .await
        .map_err(|e| fail("DescribeImages", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
    let image = images.images().first().and_then(|i| i.image_id()).unwrap_or("ami-12c6146b").to_owned();
    let launch_template = "gameforge-sdxl-worker".to_owned();
    ec2.create_launch_template()
        .launch_template_name(&launch_template)
        .launch_template_data(aws_sdk_ec2::types::RequestLaunchTemplateData::builder().image_id(image).build())
        .send()
        .await
        .map_err(|e| fail("CreateLaunchTemplate", aws_sdk_ec2::error::DisplayErrorContext(e)))?;

    let ecs = aws_sdk_ecs::Client::new(&config);
    let ecs_cluster = "gameforge".to_owned();
    ecs.create_cluster()
        .cluster_name(&ecs_cluster)
        .send()
        .await
        .map_err(|e| fail("CreateCluster", aws_sdk_ecs::error::DisplayErrorContext(e)))?;
    let task_definition = "gameforge-sdxl-worker".to_owned();
    let container = ContainerDefinition::builder()
        .name("sdxl-worker")
        .image("gameforge/sdxl-worker:latest")
        .memory(15_000)
        .resource_requirements(
            ResourceRequirement::builder()
                .r#type(ResourceType::Gpu)
                .value("1")
                .build()
                .map_err(|e| fail("GPU requirement", e))?,
        )
        .build();
    ecs.register_task_definition()
        .family(&task_definition)
        .container_definitions(container)
        .send()
        .await
        .map_err(|e| fail("RegisterTaskDefinition", aws_sdk_ecs::error::DisplayErrorContext(e)))?;
    let ecs_service = "sdxl-worker".to_owned();
    ecs.create_service()
        .cluster(&ecs_cluster)
        .service_name(&ecs_service)
        .task_definition(&task_definition)
        .desired_count(0)
        .send()
        .await
        .map_err(|e| fail("CreateService", aws_sdk_ecs::error::DisplayErrorContext(e)))?;

    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let bucket = format!("gameforge-models-{region}");
    let mut create = s3.create_bucket().bucket(&bucket);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    create.send().await.map_err(|e| fail("CreateBucket", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    let prefix = "sdxl-base-1.0";
    if with_model {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("{prefix}/model_index.json"))
            .body(aws_sdk_s3::primitives::ByteStream::from_static(br#"{"_class_name": "StableDiffusionXLPipeline"}"#))
            .send()
            .await
            .map_err(|e| fail("PutObject", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    }
    Ok(RegionStamp {
        region: region.to_owned(),
        ecs_cluster,
        ecs_service,
        task_definition,
        launch_template,
        subnets,
        model_location: S3Uri::parse(&format!("s3://{bucket}/{prefix}/")).map_err(|e| fail("model location", e))?,
    })
}
