use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

#[derive(Default)]
struct Known {
    queues: BTreeMap<String, QueueFacts>,
    instances: BTreeMap<String, BTreeMap<String, String>>,
    template: Option<LaunchTemplateFacts>,
}

impl Facts for Known {
    async fn queue(&self, _region: &str, _account: &str, name: &str) -> QueueFacts {
        self.queues.get(name).cloned().unwrap_or_default()
    }
    async fn instance_tags(&self, _region: &str, ids: &[String]) -> BTreeMap<String, BTreeMap<String, String>> {
        self.instances.iter().filter(|(id, _)| ids.contains(id)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
    async fn launch_template(&self, _region: &str, _template: &TemplateRef) -> Option<LaunchTemplateFacts> {
        self.template.clone()
    }
    async fn bucket_policy(&self, _bucket: &str) -> Option<Value> {
        None
    }
}

fn request(service: &str, region: &str, target_or_form: &str, body: &str, uri: &str) -> RequestInfo {
    let auth = format!("AWS4-HMAC-SHA256 Credential=ASIAKEY/20261204/{region}/{service}/aws4_request, Signature=x");
    let mut builder = hyper::Request::builder().method("POST").uri(uri).header("authorization", auth);
    builder = match target_or_form {
        "form" => builder.header("content-type", "application/x-www-form-urlencoded"),
        "" => builder,
        target => builder.header("x-amz-target", target),
    };
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    RequestInfo::read(&parts, bytes::Bytes::from(body.to_owned()))
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

async fn run(info: &RequestInfo, known: &Known) -> Vec<Check> {
    checks(info, known).await
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
}

#[test]
fn a_queue_url_names_the_queue_in_either_form() {
    assert_eq!(
        queue_of_url("https://sqs.us-west-2.amazonaws.com/123456789012/gf-jobs", "us-east-1"),
        Some(("us-west-2".into(), "123456789012".into(), "gf-jobs".into()))
    );
    assert_eq!(
        queue_of_url("http://127.0.0.1:5000/123456789012/gf-jobs", "eu-west-1"),
        Some(("eu-west-1".into(), "123456789012".into(), "gf-jobs".into()))
    );
    assert_eq!(queue_of_url("http://127.0.0.1:5000/", "eu-west-1"), None);
}

#[test]
fn a_batch_send_is_authorized_as_send_message_with_the_queues_tags() {
    let known = Known {
        queues: [("replies".to_owned(), QueueFacts { tags: tags(&[("gameforge:reply-to", "gf")]), policy: None })]
            .into(),
        ..Known::default()
    };
    let info = request(
        "sqs",
        "us-east-1",
        "AmazonSQS.SendMessageBatch",
        r#"{"QueueUrl":"http://127.0.0.1:1/123456789012/replies","Entries":[{"Id":"1","MessageBody":"x"}]}"#,
        "/",
    );
    let checks = block_on(run(&info, &known));
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].action, "sqs:SendMessage");
    assert_eq!(checks[0].resource, "arn:aws:sqs:us-east-1:123456789012:replies");
    assert_eq!(checks[0].context["aws:ResourceTag/gameforge:reply-to"], json!("gf"));
}

#[test]
fn draining_tags_a_running_instance_without_a_create_action() {
    let known =
        Known { instances: [("i-1".to_owned(), tags(&[("gameforge:fleet", "sdxl")]))].into(), ..Known::default() };
    let form = "Action=CreateTags&Version=2016-11-15&ResourceId.1=i-1&Tag.1.Key=gameforge%3Adraining&Tag.1.Value=2026";
    let checks = block_on(run(&request("ec2", "us-west-2", "form", form, "/"), &known));
    assert_eq!(checks.len(), 1);
    let check = &checks[0];
    assert_eq!(check.resource, "arn:aws:ec2:us-west-2:123456789012:instance/i-1");
    assert_eq!(check.context["aws:ResourceTag/gameforge:fleet"], json!("sdxl"));
    assert_eq!(check.context["aws:RequestTag/gameforge:draining"], json!("2026"));
    assert_eq!(check.context["aws:TagKeys"], json!(["gameforge:draining"]));
    assert!(!check.context.contains_key("ec2:CreateAction"));
}

#[test]
fn a_spot_fleet_runs_tags_and_passes_the_templates_role() {
    let known = Known {
        template: Some(LaunchTemplateFacts {
            id: "lt-1".into(),
            tags: tags(&[("gameforge:deployment", "gf")]),
            image_id: Some("ami-1".into()),
            security_group_ids: vec!["sg-1".into()],
            instance_profile_role: Some("arn:aws:iam::123456789012:role/gf-worker-instance-us-east-1".into()),
            tag_specifications: vec![("volume".into(), vec![("gameforge:fleet".into(), "sdxl".into())])],
            has_block_devices: true,
        }),
        ..Known::default()
    };
    let form = "Action=CreateFleet&Version=2016-11-15&Type=instant\
        &LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName=gf-sdxl-worker\
        &LaunchTemplateConfigs.1.Overrides.1.SubnetId=subnet-a&LaunchTemplateConfigs.1.Overrides.2.SubnetId=subnet-b\
        &LaunchTemplateConfigs.1.Overrides.3.SubnetId=subnet-a\
        &TargetCapacitySpecification.DefaultTargetCapacityType=spot&TargetCapacitySpecification.TotalTargetCapacity=1\
        &TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=gameforge%3Afleet\
        &TagSpecification.1.Tag.1.Value=sdxl";
    let checks = block_on(run(&request("ec2", "us-east-1", "form", form, "/"), &known));
    let has = |action: &str, resource: &str| checks.iter().any(|c| c.action == action && c.resource == resource);
    assert!(has("ec2:CreateFleet", "arn:aws:ec2:us-east-1:123456789012:fleet/fleet-new"));
    assert!(has("ec2:CreateFleet", "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1"));
    assert!(has("ec2:RunInstances", "arn:aws:ec2:us-east-1:123456789012:spot-instances-request/sir-new"));
    assert!(has("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-1"));
    assert!(has("ec2:RunInstances", "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-b"));
    assert!(has("iam:PassRole", "arn:aws:iam::123456789012:role/gf-worker-instance-us-east-1"));
    let subnet_a = checks
        .iter()
        .filter(|c| c.action == "ec2:RunInstances" && c.resource.ends_with("subnet/subnet-a"))
        .collect::<Vec<_>>();
    assert_eq!(subnet_a.len(), 1, "each subnet is authorized once");
    assert_eq!(subnet_a[0].context["ec2:IsLaunchTemplateResource"], json!("false"));
    let tagging: Vec<&Check> = checks.iter().filter(|c| c.action == "ec2:CreateTags").collect();
    assert_eq!(tagging.len(), 2);
    assert!(tagging.iter().any(|c| c.context["ec2:CreateAction"] == json!("CreateFleet")));
    assert!(tagging.iter().all(|c| c.unmodelled.is_none()));
    assert_eq!(
        checks.iter().find(|c| c.action == "iam:PassRole").unwrap().context["iam:PassedToService"],
        json!("ec2.amazonaws.com")
    );
}

#[test]
fn an_on_demand_fleet_makes_no_spot_request() {
    let known =
        Known { template: Some(LaunchTemplateFacts { id: "lt-1".into(), ..Default::default() }), ..Known::default() };
    let form = "Action=CreateFleet&Type=instant&LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId=lt-1\
        &TargetCapacitySpecification.DefaultTargetCapacityType=on-demand";
    let checks = block_on(run(&request("ec2", "us-east-1", "form", form, "/"), &known));
    assert!(checks.iter().all(|c| !c.resource.contains("spot-instances-request")));
}

#[test]
fn each_event_is_authorized_with_its_own_source() {
    let body = r#"{"Entries":[{"Source":"gameforge.worker","DetailType":"Job Result","Detail":"{}"},
        {"Source":"aws.ec2","DetailType":"x","Detail":"{}","EventBusName":"other"}]}"#;
    let checks = block_on(run(&request("events", "us-west-2", "AWSEvents.PutEvents", body, "/"), &Known::default()));
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].resource, "arn:aws:events:us-west-2:123456789012:event-bus/default");
    assert_eq!(checks[0].context["events:source"], json!("gameforge.worker"));
    assert_eq!(checks[1].resource, "arn:aws:events:us-west-2:123456789012:event-bus/other");
    assert_eq!(checks[1].context["events:source"], json!("aws.ec2"));
}

#[test]
fn ecs_calls_name_their_resources_under_the_cluster() {
    let body = r#"{"cluster":"gf-workers","service":"gf-sdxl","desiredCount":2}"#;
    let target = "AmazonEC2ContainerServiceV20141113.UpdateService";
    let checks = block_on(run(&request("ecs", "us-east-1", target, body, "/"), &Known::default()));
    assert_eq!(checks[0].resource, "arn:aws:ecs:us-east-1:123456789012:service/gf-workers/gf-sdxl");
    assert_eq!(checks[0].context["ecs:cluster"], json!("arn:aws:ecs:us-east-1:123456789012:cluster/gf-workers"));
    let body = r#"{"cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/gf-workers","containerInstances":["abc"],"status":"DRAINING"}"#;
    let target = "AmazonEC2ContainerServiceV20141113.UpdateContainerInstancesState";
    let checks = block_on(run(&request("ecs", "us-east-1", target, body, "/"), &Known::default()));
    assert_eq!(checks[0].resource, "arn:aws:ecs:us-east-1:123456789012:container-instance/gf-workers/abc");
}

#[test]
fn a_presigned_get_is_authorized_as_its_signer() {
    let uri = "/gf-out/images/a%20b.png?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=ASIAPRESIGNED%2F20261204%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x";
    let (parts, ()) = hyper::Request::builder().method("GET").uri(uri).body(()).unwrap().into_parts();
    let info = RequestInfo::read(&parts, bytes::Bytes::new());
    assert_eq!(info.access_key.as_deref(), Some("ASIAPRESIGNED"));
    let checks = block_on(run(&info, &Known::default()));
    assert_eq!(checks[0].action, "s3:GetObject");
    assert_eq!(checks[0].resource, "arn:aws:s3:::gf-out/images/a b.png");
}

#[test]
fn an_s3_sub_resource_or_an_unknown_action_is_not_let_through_unmodelled() {
    let (parts, ()) = hyper::Request::builder()
        .method("PUT")
        .uri("/bucket/key?tagging")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=ASIA/20261204/us-east-1/s3/aws4_request")
        .body(())
        .unwrap()
        .into_parts();
    let checks = block_on(run(&RequestInfo::read(&parts, bytes::Bytes::new()), &Known::default()));
    assert!(checks[0].unmodelled.as_deref().unwrap().contains("?tagging"));
    let checks = block_on(run(&request("ec2", "us-east-1", "form", "Action=DeleteVpc", "/"), &Known::default()));
    assert!(checks[0].unmodelled.is_some());
    let checks = block_on(run(&request("kms", "us-east-1", "TrentService.Decrypt", "{}", "/"), &Known::default()));
    assert!(checks[0].unmodelled.is_some());
}

#[test]
fn asking_who_one_is_needs_no_permission() {
    let checks = block_on(run(
        &request("sts", "us-east-1", "form", "Action=GetCallerIdentity&Version=2011-06-15", "/"),
        &Known::default(),
    ));
    assert!(checks.is_empty());
}

#[test]
fn reading_a_stacks_outputs_is_checked_on_that_stack() {
    let info =
        request("cloudformation", "us-east-1", "form", "Action=DescribeStacks&StackName=gf&Version=2010-05-15", "/");
    let checks = block_on(run(&info, &Known::default()));
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].action, "cloudformation:DescribeStacks");
    assert!(checks[0].resource.starts_with("arn:aws:cloudformation:us-east-1:123456789012:stack/gf/"), "{checks:?}");
    let all = request("cloudformation", "us-east-1", "form", "Action=DescribeStacks&Version=2010-05-15", "/");
    assert_eq!(block_on(run(&all, &Known::default()))[0].resource, "*");
}

#[test]
fn a_query_of_an_index_is_checked_on_the_index_and_of_the_table_on_the_table() {
    let index = request(
        "dynamodb",
        "us-east-1",
        "DynamoDB_20120810.Query",
        r#"{"TableName": "gf-jobs", "IndexName": "by-owner", "KeyConditionExpression": "submitted_by = :o"}"#,
        "/",
    );
    let checks = block_on(run(&index, &Known::default()));
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].action, "dynamodb:Query");
    assert_eq!(checks[0].resource, "arn:aws:dynamodb:us-east-1:123456789012:table/gf-jobs/index/by-owner");
    let table = request("dynamodb", "us-east-1", "DynamoDB_20120810.Query", r#"{"TableName": "gf-jobs"}"#, "/");
    assert_eq!(
        block_on(run(&table, &Known::default()))[0].resource,
        "arn:aws:dynamodb:us-east-1:123456789012:table/gf-jobs"
    );
}
