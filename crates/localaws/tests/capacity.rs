//! Emulated EC2 capacity: launches answer as EC2 does when a capacity model says there is no room.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetType, InstanceType, RequestLaunchTemplateData, ResourceType, Tag,
    TagSpecification, TargetCapacitySpecificationRequest,
};
use gameforge_capacity::CapacityModel;
use gameforge_localaws::Emulator;

struct Network {
    subnet_a: String,
    subnet_b: String,
}

async fn network(ec2: &aws_sdk_ec2::Client) -> Network {
    let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.unwrap().vpc.unwrap().vpc_id.unwrap();
    let subnet = |cidr: &'static str, zone: &'static str| {
        let vpc = vpc.clone();
        async move {
            ec2.create_subnet()
                .vpc_id(vpc)
                .cidr_block(cidr)
                .availability_zone(zone)
                .send()
                .await
                .unwrap()
                .subnet
                .unwrap()
                .subnet_id
                .unwrap()
        }
    };
    let network = Network {
        subnet_a: subnet("10.0.1.0/24", "us-east-1a").await,
        subnet_b: subnet("10.0.2.0/24", "us-east-1b").await,
    };
    ec2.create_launch_template()
        .launch_template_name("worker")
        .launch_template_data(RequestLaunchTemplateData::builder().image_id("ami-12c6146b").build())
        .send()
        .await
        .unwrap();
    network
}

fn model(json: &str) -> CapacityModel {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn an_instant_fleet_launches_what_fits_and_names_each_override_without_room() {
    let emulator = Emulator::start().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&emulator.sdk_config().await);
    let net = network(&ec2).await;
    emulator.faults().set_capacity(model(
        r#"[{"availability_zone": "us-east-1a", "instance_type": "g5.xlarge", "available": 0},
            {"availability_zone": "us-east-1b", "instance_type": "g5.xlarge", "capacity_type": "spot", "available": 1}]"#,
    ));
    let overrides =
        [("g5.xlarge", &net.subnet_a, 0.0), ("g5.xlarge", &net.subnet_b, 0.0), ("g4dn.xlarge", &net.subnet_a, 1.0)]
            .into_iter()
            .map(|(t, s, p)| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(InstanceType::from(t))
                    .subnet_id(s)
                    .priority(p)
                    .build()
            });
    let fleet = ec2
        .create_fleet()
        .r#type(FleetType::Instant)
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(3)
                .default_target_capacity_type(DefaultTargetCapacityType::Spot)
                .build(),
        )
        .launch_template_configs(
            FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_name("worker")
                        .version("$Latest")
                        .build(),
                )
                .set_overrides(Some(overrides.collect()))
                .build(),
        )
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("gameforge:fleet").value("sdxl").build())
                .build(),
        )
        .send()
        .await
        .expect("an instant fleet succeeds as a whole");

    let errors = fleet.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].error_code(), Some("InsufficientInstanceCapacity"));
    let failed = errors[0].launch_template_and_overrides().unwrap().overrides().unwrap();
    assert_eq!(
        (failed.instance_type().map(|t| t.as_str()), failed.availability_zone()),
        (Some("g5.xlarge"), Some("us-east-1a"))
    );

    let launched: Vec<(String, usize)> = fleet
        .instances()
        .iter()
        .map(|i| (i.instance_type().unwrap().as_str().to_owned(), i.instance_ids().len()))
        .collect();
    assert_eq!(launched, vec![("g5.xlarge".to_owned(), 1), ("g4dn.xlarge".to_owned(), 2)]);

    let tagged = ec2
        .describe_instances()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:gameforge:fleet").values("sdxl").build())
        .send()
        .await
        .unwrap();
    let instances: Vec<_> = tagged.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(instances.len(), 3);
    assert!(instances.iter().all(|i| i.instance_lifecycle().map(|l| l.as_str()) == Some("spot")));
}

#[tokio::test]
async fn run_instances_without_room_is_a_shortage_until_an_instance_goes() {
    let emulator = Emulator::start().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&emulator.sdk_config().await);
    let net = network(&ec2).await;
    emulator
        .faults()
        .set_capacity(model(r#"[{"instance_type": "g5.xlarge", "capacity_type": "on_demand", "available": 1}]"#));
    let launch = || {
        ec2.run_instances()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::G5Xlarge)
            .subnet_id(&net.subnet_b)
            .min_count(1)
            .max_count(1)
            .send()
    };
    let first = launch().await.unwrap();
    let error = launch().await.unwrap_err();
    assert_eq!(error.code(), Some("InsufficientInstanceCapacity"));
    assert!(error.message().unwrap().contains("(us-east-1b)"), "{:?}", error.message());

    let id = first.instances()[0].instance_id().unwrap();
    ec2.terminate_instances().instance_ids(id).send().await.unwrap();
    launch().await.expect("room again after the termination");

    // Capacity returns for everyone when the model changes.
    emulator.faults().set_capacity(CapacityModel::default());
    launch().await.expect("no limit any more");
}
