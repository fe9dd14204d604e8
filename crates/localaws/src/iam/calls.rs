//! What AWS authorizes for a request: the IAM action, resource and request context of every check a call makes,
//! as the Service Authorization Reference and the services' guides describe them. One call may make several
//! checks (an instant EC2 fleet also runs instances, tags them and passes a role); every one must be allowed.
//!
//! A call this module has no model for is never let through: it becomes an [`Check::unmodelled`] check, which
//! the enforcer denies, so a new kind of call shows up as a failure to model rather than a silent allow.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::injector::RequestInfo;

/// The emulator's account (moto's default).
pub const ACCOUNT: &str = "123456789012";

/// One authorization check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// `service:Action`.
    pub action: String,
    /// The resource ARN, or `*` for actions without resource-level permissions.
    pub resource: String,
    pub context: Map<String, Value>,
    /// The resource's own policy (a queue or bucket policy), which can allow on its own within the account.
    pub resource_policy: Option<Value>,
    /// Set when the call has no model: the check is denied with this reason.
    pub unmodelled: Option<String>,
}

impl Check {
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            context: Map::new(),
            resource_policy: None,
            unmodelled: None,
        }
    }

    fn unmodelled(service: &str, action: &str, why: &str) -> Self {
        Self { unmodelled: Some(why.to_owned()), ..Self::new(format!("{service}:{action}"), "*") }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.context.insert(key.to_owned(), value.into());
        self
    }

    fn with_resource_tags(mut self, tags: &BTreeMap<String, String>) -> Self {
        for (k, v) in tags {
            self.context.insert(format!("aws:ResourceTag/{k}"), v.clone().into());
        }
        self
    }

    fn with_request_tags(mut self, tags: &[(String, String)]) -> Self {
        if tags.is_empty() {
            return self;
        }
        for (k, v) in tags {
            self.context.insert(format!("aws:RequestTag/{k}"), v.clone().into());
        }
        let keys: Vec<Value> = tags.iter().map(|(k, _)| Value::from(k.clone())).collect();
        self.context.insert("aws:TagKeys".into(), Value::Array(keys));
        self
    }
}

type Tags = Vec<(String, String)>;

/// What a check may need to know about resources the request only names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFacts {
    pub tags: BTreeMap<String, String>,
    pub policy: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchTemplateFacts {
    pub id: String,
    pub tags: BTreeMap<String, String>,
    pub image_id: Option<String>,
    pub security_group_ids: Vec<String>,
    /// The role of the template's instance profile: launching with it passes the role to EC2.
    pub instance_profile_role: Option<String>,
    /// The template's own tag specifications: `(resource type, tags)`.
    pub tag_specifications: Vec<(String, Vec<(String, String)>)>,
    pub has_block_devices: bool,
}

/// Where a request names a launch template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    Name(String),
    Id(String),
}

/// Lookups of what AWS knows about a resource when it authorizes a call on it.
pub trait Facts {
    fn queue(&self, region: &str, account: &str, name: &str) -> impl Future<Output = QueueFacts> + Send;
    /// Tags of each instance that exists.
    fn instance_tags(
        &self,
        region: &str,
        ids: &[String],
    ) -> impl Future<Output = BTreeMap<String, BTreeMap<String, String>>> + Send;
    fn launch_template(
        &self,
        region: &str,
        template: &TemplateRef,
    ) -> impl Future<Output = Option<LaunchTemplateFacts>> + Send;
    fn bucket_policy(&self, bucket: &str) -> impl Future<Output = Option<Value>> + Send;
}

/// Every check `info` needs; none for calls that need no authorization (`sts:GetCallerIdentity`).
pub async fn checks(info: &RequestInfo, facts: &impl Facts) -> Vec<Check> {
    let service = info.service.as_deref().unwrap_or("unknown");
    let action = info.action.as_deref().unwrap_or("unknown");
    let region = info.region.as_deref().unwrap_or("us-east-1");
    match service {
        "sqs" => sqs(info, action, region, facts).await,
        "dynamodb" => dynamodb(info, action, region),
        "events" => events(info, action, region),
        "ec2" => ec2(info, action, region, facts).await,
        "ecs" => ecs(info, action, region),
        "s3" => s3(info, action, facts).await,
        "cloudformation" => cloudformation(info, action, region),
        // Every principal may ask who it is; AWS checks no permission for it.
        "sts" if action == "GetCallerIdentity" => Vec::new(),
        _ => vec![Check::unmodelled(service, action, "the emulator has no authorization model for this service")],
    }
}

fn param<'a>(info: &'a RequestInfo, name: &str) -> Option<&'a str> {
    info.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Values of `prefix.N.suffix` parameters in `N` order (`suffix` empty: `prefix.N`).
fn indexed<'a>(info: &'a RequestInfo, prefix: &str, suffix: &str) -> Vec<&'a str> {
    let mut found: Vec<(u32, &str)> = info
        .params
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
            let (n, tail) = rest.split_once('.').unwrap_or((rest, ""));
            (tail == suffix).then(|| Some((n.parse().ok()?, v.as_str()))).flatten()
        })
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found.into_iter().map(|(_, v)| v).collect()
}

// ---- SQS ------------------------------------------------------------------------------------------------------

/// `(region, account, name)` of a queue URL: `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` or the emulator's
/// `http://127.0.0.1:PORT/ACCOUNT/NAME` (whose region is the one the request is signed for).
pub fn queue_of_url(url: &str, signing_region: &str) -> Option<(String, String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let mut segments = parsed.path_segments()?.filter(|s| !s.is_empty());
    let (account, name) = (segments.next()?.to_owned(), segments.next()?.to_owned());
    let region = parsed
        .host_str()
        .and_then(|h| h.strip_prefix("sqs."))
        .and_then(|h| h.split('.').next())
        .filter(|r| r.contains('-'))
        .unwrap_or(signing_region)
        .to_owned();
    Some((region, account, name))
}

async fn sqs(info: &RequestInfo, action: &str, region: &str, facts: &impl Facts) -> Vec<Check> {
    let iam_action = match action {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        "ReceiveMessage"
        | "SendMessage"
        | "DeleteMessage"
        | "ChangeMessageVisibility"
        | "GetQueueAttributes"
        | "SetQueueAttributes"
        | "GetQueueUrl"
        | "ListQueueTags"
        | "TagQueue"
        | "UntagQueue"
        | "PurgeQueue"
        | "CreateQueue"
        | "DeleteQueue" => action,
        "ListQueues" => return vec![Check::new("sqs:ListQueues", "*")],
        _ => return vec![Check::unmodelled("sqs", action, "no model for this SQS action")],
    };
    let queue = match action {
        "GetQueueUrl" | "CreateQueue" => param(info, "QueueName").map(|name| {
            let account = param(info, "QueueOwnerAWSAccountId").unwrap_or(ACCOUNT);
            (region.to_owned(), account.to_owned(), name.to_owned())
        }),
        _ => param(info, "QueueUrl").and_then(|url| queue_of_url(url, region)),
    };
    let Some((region, account, name)) = queue else {
        return vec![Check::unmodelled("sqs", action, "the request names no queue")];
    };
    let facts = facts.queue(&region, &account, &name).await;
    let mut check = Check::new(format!("sqs:{iam_action}"), format!("arn:aws:sqs:{region}:{account}:{name}"))
        .with_resource_tags(&facts.tags);
    check.resource_policy = facts.policy;
    vec![check]
}

// ---- DynamoDB -------------------------------------------------------------------------------------------------

fn table_arn(table: &str, region: &str) -> String {
    if table.starts_with("arn:") {
        table.to_owned()
    } else {
        format!("arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}")
    }
}

fn dynamodb(info: &RequestInfo, action: &str, region: &str) -> Vec<Check> {
    match action {
        "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "Query" | "Scan" | "DescribeTable" => {
            match param(info, "TableName") {
                // A read of a secondary index is authorized on the index, not on its table (a policy may grant
                // one without the other).
                Some(table) => match param(info, "IndexName").filter(|_| matches!(action, "Query" | "Scan")) {
                    Some(index) => vec![Check::new(
                        format!("dynamodb:{action}"),
                        format!("{}/index/{index}", table_arn(table, region)),
                    )],
                    None => vec![Check::new(format!("dynamodb:{action}"), table_arn(table, region))],
                },
                None => vec![Check::unmodelled("dynamodb", action, "the request names no table")],
            }
        }
        "TransactWriteItems" => {
            let body: Value = serde_json::from_slice(&info.body).unwrap_or_default();
            let items = body.get("TransactItems").and_then(Value::as_array).cloned().unwrap_or_default();
            items
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|item| item.iter())
                .map(|(kind, op)| {
                    let iam_action = match kind.as_str() {
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        _ => "ConditionCheckItem",
                    };
                    let table = op.get("TableName").and_then(Value::as_str).unwrap_or_default();
                    Check::new(format!("dynamodb:{iam_action}"), table_arn(table, region))
                })
                .collect()
        }
        _ => vec![Check::unmodelled("dynamodb", action, "no model for this DynamoDB action")],
    }
}

// ---- EventBridge ----------------------------------------------------------------------------------------------

fn events(info: &RequestInfo, action: &str, region: &str) -> Vec<Check> {
    if action != "PutEvents" {
        return vec![Check::unmodelled("events", action, "no model for this EventBridge action")];
    }
    let body: Value = serde_json::from_slice(&info.body).unwrap_or_default();
    let entries = body.get("Entries").and_then(Value::as_array).cloned().unwrap_or_default();
    // Each entry is authorized with its own source and detail type against its own bus.
    entries
        .iter()
        .map(|entry| {
            let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            let bus = match field("EventBusName") {
                name if name.starts_with("arn:") => name,
                name if name.is_empty() => format!("arn:aws:events:{region}:{ACCOUNT}:event-bus/default"),
                name => format!("arn:aws:events:{region}:{ACCOUNT}:event-bus/{name}"),
            };
            Check::new("events:PutEvents", bus)
                .with("events:source", field("Source"))
                .with("events:detail-type", field("DetailType"))
        })
        .collect()
}

// ---- ECS ------------------------------------------------------------------------------------------------------

fn ecs_arn(kind: &str, name_or_arn: &str, cluster: Option<&str>, region: &str) -> String {
    if name_or_arn.starts_with("arn:") {
        return name_or_arn.to_owned();
    }
    match cluster {
        Some(cluster) => format!("arn:aws:ecs:{region}:{ACCOUNT}:{kind}/{}/{name_or_arn}", cluster_name(cluster)),
        None => format!("arn:aws:ecs:{region}:{ACCOUNT}:{kind}/{name_or_arn}"),
    }
}

fn cluster_name(cluster: &str) -> &str {
    cluster.rsplit('/').next().unwrap_or(cluster)
}

fn ecs(info: &RequestInfo, action: &str, region: &str) -> Vec<Check> {
    let cluster = param(info, "cluster").unwrap_or("default");
    let cluster_arn = ecs_arn("cluster", cluster, None, region);
    let iam_action = format!("ecs:{action}");
    match action {
        "DescribeTaskDefinition" | "ListClusters" | "ListTaskDefinitions" => vec![Check::new(iam_action, "*")],
        "ListContainerInstances" | "ListServices" => vec![Check::new(iam_action, cluster_arn)],
        "DescribeClusters" => indexed(info, "clusters", "")
            .into_iter()
            .map(|c| Check::new(iam_action.clone(), ecs_arn("cluster", c, None, region)))
            .collect(),
        "UpdateService" | "DescribeServices" => {
            let services = if action == "UpdateService" {
                param(info, "service").into_iter().collect()
            } else {
                indexed(info, "services", "")
            };
            services
                .into_iter()
                .map(|s| {
                    Check::new(iam_action.clone(), ecs_arn("service", s, Some(cluster), region))
                        .with("ecs:cluster", cluster_arn.clone())
                })
                .collect()
        }
        "DescribeContainerInstances" | "UpdateContainerInstancesState" => indexed(info, "containerInstances", "")
            .into_iter()
            .map(|c| {
                Check::new(iam_action.clone(), ecs_arn("container-instance", c, Some(cluster), region))
                    .with("ecs:cluster", cluster_arn.clone())
            })
            .collect(),
        _ => vec![Check::unmodelled("ecs", action, "no model for this ECS action")],
    }
}

// ---- CloudFormation -------------------------------------------------------------------------------------------

/// Reading a stack's outputs (`gameforge … --stack NAME`). A stack's ARN ends in an id AWS makes up; policies name
/// it `stack/NAME/*`, so any id stands for it here.
fn cloudformation(info: &RequestInfo, action: &str, region: &str) -> Vec<Check> {
    match (action, param(info, "StackName")) {
        ("DescribeStacks", Some(stack)) => {
            let resource = if stack.starts_with("arn:") {
                stack.to_owned()
            } else {
                format!("arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{stack}/00000000-0000-0000-0000-000000000000")
            };
            vec![Check::new("cloudformation:DescribeStacks", resource)]
        }
        // Every stack of the account: only a policy granting `*` allows it.
        ("DescribeStacks", None) => vec![Check::new("cloudformation:DescribeStacks", "*")],
        _ => vec![Check::unmodelled("cloudformation", action, "no model for this CloudFormation action")],
    }
}

// ---- S3 -------------------------------------------------------------------------------------------------------

/// Query parameters of object and listing calls; any other names a sub-resource (`?tagging`, `?policy`…) that
/// is a different action.
const S3_PLAIN_QUERY: &[&str] = &[
    "list-type",
    "prefix",
    "delimiter",
    "continuation-token",
    "max-keys",
    "encoding-type",
    "start-after",
    "fetch-owner",
    "x-id",
    "response-content-type",
    "response-content-disposition",
];

async fn s3(info: &RequestInfo, action: &str, facts: &impl Facts) -> Vec<Check> {
    let Some(target) = info.s3_target.as_ref() else {
        return vec![Check::unmodelled("s3", action, "the request names no bucket")];
    };
    if let Some(sub) = target
        .query
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !S3_PLAIN_QUERY.contains(k) && !k.starts_with("X-Amz-") && !k.starts_with("x-amz-"))
    {
        return vec![Check::unmodelled("s3", action, &format!("no model for the ?{sub} sub-resource"))];
    }
    let bucket_arn = format!("arn:aws:s3:::{}", target.bucket);
    let object_arn = format!("{bucket_arn}/{}", target.key);
    let (iam_action, resource) = match action {
        "PutObject" => ("s3:PutObject", object_arn),
        "GetObject" | "HeadObject" => ("s3:GetObject", object_arn),
        "DeleteObject" => ("s3:DeleteObject", object_arn),
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => ("s3:ListBucket", bucket_arn),
        "CreateBucket" => ("s3:CreateBucket", bucket_arn),
        _ => return vec![Check::unmodelled("s3", action, "no model for this S3 call")],
    };
    let mut check = Check::new(iam_action, resource);
    if iam_action == "s3:ListBucket"
        && let Some((_, prefix)) = target.query.iter().find(|(k, _)| k == "prefix")
    {
        check = check.with("s3:prefix", prefix.clone());
    }
    check.resource_policy = facts.bucket_policy(&target.bucket).await;
    vec![check]
}

// ---- EC2 ------------------------------------------------------------------------------------------------------

fn ec2_arn(region: &str, id: &str) -> Option<String> {
    let kind = match id.split_once('-')?.0 {
        "i" => "instance",
        "vol" => "volume",
        "eni" => "network-interface",
        "sg" => "security-group",
        "subnet" => "subnet",
        "fleet" => "fleet",
        "lt" => "launch-template",
        "sir" => "spot-instances-request",
        "ami" => return Some(format!("arn:aws:ec2:{region}::image/{id}")),
        _ => return None,
    };
    Some(format!("arn:aws:ec2:{region}:{ACCOUNT}:{kind}/{id}"))
}

/// Tags of `TagSpecification.N` of the given resource type.
fn tag_specification(info: &RequestInfo, resource_type: &str) -> Vec<(String, String)> {
    let specs = indexed(info, "TagSpecification", "ResourceType");
    let Some(n) = specs.iter().position(|t| *t == resource_type) else { return Vec::new() };
    let prefix = format!("TagSpecification.{}.Tag", n + 1);
    indexed(info, &prefix, "Key")
        .into_iter()
        .zip(indexed(info, &prefix, "Value"))
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

async fn ec2(info: &RequestInfo, action: &str, region: &str, facts: &impl Facts) -> Vec<Check> {
    let iam_action = format!("ec2:{action}");
    if action.starts_with("Describe") || action == "GetSpotPlacementScores" {
        return vec![Check::new(iam_action, "*").with("ec2:Region", region)];
    }
    match action {
        "CreateTags" => {
            let ids = indexed(info, "ResourceId", "");
            let tags: Vec<(String, String)> = indexed(info, "Tag", "Key")
                .into_iter()
                .zip(indexed(info, "Tag", "Value"))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let instances: Vec<String> =
                ids.iter().filter(|id| id.starts_with("i-")).map(|s| (*s).to_owned()).collect();
            let existing = facts.instance_tags(region, &instances).await;
            ids.iter()
                .map(|id| match ec2_arn(region, id) {
                    Some(arn) => Check::new(&iam_action, arn)
                        .with_request_tags(&tags)
                        .with_resource_tags(existing.get(*id).unwrap_or(&BTreeMap::new()))
                        .with("ec2:Region", region),
                    None => Check::unmodelled("ec2", action, &format!("no model for resource {id}")),
                })
                .collect()
        }
        "TerminateInstances" | "StopInstances" | "RebootInstances" => {
            let ids: Vec<String> = indexed(info, "InstanceId", "").into_iter().map(str::to_owned).collect();
            let existing = facts.instance_tags(region, &ids).await;
            ids.iter()
                .map(|id| {
                    Check::new(&iam_action, format!("arn:aws:ec2:{region}:{ACCOUNT}:instance/{id}"))
                        .with_resource_tags(existing.get(id).unwrap_or(&BTreeMap::new()))
                        .with("ec2:Region", region)
                })
                .collect()
        }
        "CreateFleet" => create_fleet(info, region, facts).await,
        "RunInstances" => run_instances(info, region, facts).await,
        _ => vec![Check::unmodelled("ec2", action, "no model for this EC2 action")],
    }
}

/// A resource a call creates has no id yet when AWS authorizes it; a placeholder id stands for it, so that
/// policies match it as they would the real one (a wildcard would be a pattern, not a resource).
const NEW_INSTANCE: &str = "i-new";

fn new_id(kind: &str) -> &'static str {
    match kind {
        "instance" => NEW_INSTANCE,
        "volume" => "vol-new",
        "network-interface" => "eni-new",
        "fleet" => "fleet-new",
        "spot-instances-request" => "sir-new",
        _ => "new",
    }
}

/// What launching through a launch template authorizes, shared by `CreateFleet` and `RunInstances`: EC2 runs
/// the instances with the caller's permissions (`ec2:RunInstances` on every resource the launch uses, with
/// `ec2:LaunchTemplate` and `ec2:IsLaunchTemplateResource` telling which came from the template), tags what
/// the template and the request tag on creation (`ec2:CreateTags` with `ec2:CreateAction`), and passes the
/// instance profile's role to EC2 (`iam:PassRole`).
struct Launch<'a> {
    region: &'a str,
    template: Option<LaunchTemplateFacts>,
    subnets: Vec<String>,
    spot: bool,
    create_action: &'a str,
    /// Tags the request itself puts on instances.
    instance_tags: Vec<(String, String)>,
}

impl Launch<'_> {
    fn run_instances(&self) -> Vec<Check> {
        let region = self.region;
        let Some(template) = &self.template else {
            return vec![Check::unmodelled("ec2", "RunInstances", "a launch without a launch template")];
        };
        let template_arn = format!("arn:aws:ec2:{region}:{ACCOUNT}:launch-template/{}", template.id);
        let run = |resource: String, from_template: bool| {
            Check::new("ec2:RunInstances", resource)
                .with("ec2:LaunchTemplate", template_arn.clone())
                .with("ec2:IsLaunchTemplateResource", if from_template { "true" } else { "false" })
                .with("ec2:Region", region)
        };
        let mut all_instance_tags: Vec<(String, String)> = self.instance_tags.clone();
        for (kind, tags) in &template.tag_specifications {
            if kind == "instance" {
                all_instance_tags.extend(tags.iter().cloned());
            }
        }
        let mut checks = vec![
            run(template_arn.clone(), true).with_resource_tags(&template.tags),
            run(format!("arn:aws:ec2:{region}:{ACCOUNT}:instance/{NEW_INSTANCE}"), true)
                .with_request_tags(&all_instance_tags),
            run(format!("arn:aws:ec2:{region}:{ACCOUNT}:network-interface/eni-new"), true),
        ];
        if let Some(image) = &template.image_id {
            checks.push(run(format!("arn:aws:ec2:{region}::image/{image}"), true));
        }
        for group in &template.security_group_ids {
            checks.push(run(format!("arn:aws:ec2:{region}:{ACCOUNT}:security-group/{group}"), true));
        }
        for subnet in &self.subnets {
            checks.push(run(format!("arn:aws:ec2:{region}:{ACCOUNT}:subnet/{subnet}"), false));
        }
        if template.has_block_devices {
            checks.push(run(format!("arn:aws:ec2:{region}:{ACCOUNT}:volume/vol-new"), true));
        }
        if self.spot {
            checks.push(run(format!("arn:aws:ec2:{region}:{ACCOUNT}:spot-instances-request/sir-new"), false));
        }
        // Tags on creation: the request's on instances, the template's on whatever it names.
        let mut tagged: Vec<(&str, Tags, &str)> = Vec::new();
        if !self.instance_tags.is_empty() {
            tagged.push(("instance", self.instance_tags.clone(), self.create_action));
        }
        for (kind, tags) in &template.tag_specifications {
            tagged.push((kind.as_str(), tags.clone(), "RunInstances"));
        }
        for (kind, tags, create_action) in tagged {
            checks.push(
                Check::new("ec2:CreateTags", format!("arn:aws:ec2:{region}:{ACCOUNT}:{kind}/{}", new_id(kind)))
                    .with_request_tags(&tags)
                    .with("ec2:CreateAction", create_action)
                    .with("ec2:Region", region),
            );
        }
        if let Some(role) = &template.instance_profile_role {
            checks.push(Check::new("iam:PassRole", role.clone()).with("iam:PassedToService", "ec2.amazonaws.com"));
        }
        checks
    }
}

fn template_ref(name: Option<&str>, id: Option<&str>) -> Option<TemplateRef> {
    match (id, name) {
        (Some(id), _) => Some(TemplateRef::Id(id.to_owned())),
        (None, Some(name)) => Some(TemplateRef::Name(name.to_owned())),
        (None, None) => None,
    }
}

async fn create_fleet(info: &RequestInfo, region: &str, facts: &impl Facts) -> Vec<Check> {
    if param(info, "Type") != Some("instant") {
        return vec![Check::unmodelled("ec2", "CreateFleet", "only instant fleets are modelled")];
    }
    let spec = "LaunchTemplateConfigs.1.LaunchTemplateSpecification";
    let template = match template_ref(
        param(info, &format!("{spec}.LaunchTemplateName")),
        param(info, &format!("{spec}.LaunchTemplateId")),
    ) {
        Some(r) => facts.launch_template(region, &r).await,
        None => None,
    };
    let subnets: Vec<String> = indexed(info, "LaunchTemplateConfigs.1.Overrides", "SubnetId")
        .into_iter()
        .map(str::to_owned)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let spot = param(info, "TargetCapacitySpecification.DefaultTargetCapacityType") == Some("spot");
    let instance_tags = tag_specification(info, "instance");
    let fleet_tags = tag_specification(info, "fleet");
    let mut checks = vec![
        Check::new("ec2:CreateFleet", format!("arn:aws:ec2:{region}:{ACCOUNT}:fleet/fleet-new"))
            .with_request_tags(&fleet_tags)
            .with("ec2:Region", region),
        Check::new("ec2:CreateFleet", format!("arn:aws:ec2:{region}:{ACCOUNT}:instance/{NEW_INSTANCE}"))
            .with_request_tags(&instance_tags)
            .with("ec2:Region", region),
    ];
    if let Some(template) = &template {
        checks.push(
            Check::new("ec2:CreateFleet", format!("arn:aws:ec2:{region}:{ACCOUNT}:launch-template/{}", template.id))
                .with_resource_tags(&template.tags)
                .with("ec2:Region", region),
        );
        if let Some(image) = &template.image_id {
            checks.push(
                Check::new("ec2:CreateFleet", format!("arn:aws:ec2:{region}::image/{image}"))
                    .with("ec2:Region", region),
            );
        }
    }
    for subnet in &subnets {
        checks.push(
            Check::new("ec2:CreateFleet", format!("arn:aws:ec2:{region}:{ACCOUNT}:subnet/{subnet}"))
                .with("ec2:Region", region),
        );
    }
    let launch = Launch { region, template, subnets, spot, create_action: "CreateFleet", instance_tags };
    checks.extend(launch.run_instances());
    checks
}

async fn run_instances(info: &RequestInfo, region: &str, facts: &impl Facts) -> Vec<Check> {
    let template = match template_ref(
        param(info, "LaunchTemplate.LaunchTemplateName"),
        param(info, "LaunchTemplate.LaunchTemplateId"),
    ) {
        Some(r) => facts.launch_template(region, &r).await,
        None => None,
    };
    let launch = Launch {
        region,
        template,
        subnets: param(info, "SubnetId").map(str::to_owned).into_iter().collect(),
        spot: param(info, "InstanceMarketOptions.MarketType") == Some("spot"),
        create_action: "RunInstances",
        instance_tags: tag_specification(info, "instance"),
    };
    launch.run_instances()
}

#[cfg(test)]
mod tests;
