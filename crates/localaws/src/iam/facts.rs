//! What AWS knows about a resource when it authorizes a call on it (its tags, its policy, a launch template's
//! contents), read from moto directly — not through the injector, so that the lookups are neither faulted nor
//! themselves authorized.

use std::collections::BTreeMap;

use aws_config::{Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use super::calls::{Facts, LaunchTemplateFacts, QueueFacts, TemplateRef};

#[derive(Debug, Clone)]
pub struct MotoFacts {
    base: SdkConfig,
}

impl MotoFacts {
    pub fn new(moto_port: u16) -> Self {
        Self { base: crate::moto::direct_config(moto_port) }
    }

    fn config(&self, region: &str) -> SdkConfig {
        self.base.to_builder().region(Region::new(region.to_owned())).build()
    }

    /// The role ARN of an instance profile given by ARN or name.
    async fn profile_role(&self, profile: &str) -> Option<String> {
        let name = profile.rsplit('/').next()?;
        let answer =
            aws_sdk_iam::Client::new(&self.base).get_instance_profile().instance_profile_name(name).send().await;
        answer.ok()?.instance_profile()?.roles().first().map(|r| r.arn().to_owned())
    }
}

impl Facts for MotoFacts {
    async fn queue(&self, region: &str, account: &str, name: &str) -> QueueFacts {
        let sqs = aws_sdk_sqs::Client::new(&self.config(region));
        let Ok(url) = sqs.get_queue_url().queue_name(name).queue_owner_aws_account_id(account).send().await else {
            return QueueFacts::default();
        };
        let url = url.queue_url().unwrap_or_default().to_owned();
        let tags = sqs
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .ok()
            .and_then(|t| t.tags().cloned())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let policy = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::Policy)
            .send()
            .await
            .ok()
            .and_then(|a| a.attributes().and_then(|a| a.get(&QueueAttributeName::Policy)).cloned())
            .and_then(|text| serde_json::from_str(&text).ok());
        QueueFacts { tags, policy }
    }

    async fn instance_tags(&self, region: &str, ids: &[String]) -> BTreeMap<String, BTreeMap<String, String>> {
        if ids.is_empty() {
            return BTreeMap::new();
        }
        let ec2 = aws_sdk_ec2::Client::new(&self.config(region));
        let mut out = BTreeMap::new();
        // One at a time: DescribeInstances fails as a whole when any id is unknown.
        for id in ids {
            let Ok(answer) = ec2.describe_instances().instance_ids(id).send().await else { continue };
            for instance in answer.reservations().iter().flat_map(|r| r.instances()) {
                let tags = instance
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                    .collect();
                out.insert(instance.instance_id().unwrap_or(id).to_owned(), tags);
            }
        }
        out
    }

    async fn launch_template(&self, region: &str, template: &TemplateRef) -> Option<LaunchTemplateFacts> {
        let ec2 = aws_sdk_ec2::Client::new(&self.config(region));
        let described = match template {
            TemplateRef::Name(name) => ec2.describe_launch_templates().launch_template_names(name),
            TemplateRef::Id(id) => ec2.describe_launch_templates().launch_template_ids(id),
        }
        .send()
        .await
        .ok()?;
        let found = described.launch_templates().first()?;
        let id = found.launch_template_id()?.to_owned();
        let tags = found
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
            .collect();
        let versions =
            ec2.describe_launch_template_versions().launch_template_id(&id).versions("$Default").send().await.ok()?;
        let data = versions.launch_template_versions().first()?.launch_template_data()?;
        let instance_profile_role = match data.iam_instance_profile().and_then(|p| p.arn().or(p.name())) {
            Some(arn) => self.profile_role(arn).await,
            None => None,
        };
        let tag_specifications = data
            .tag_specifications()
            .iter()
            .filter_map(|spec| {
                let kind = spec.resource_type()?.as_str().to_owned();
                let tags = spec
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                    .collect();
                Some((kind, tags))
            })
            .collect();
        Some(LaunchTemplateFacts {
            id,
            tags,
            image_id: data.image_id().map(str::to_owned),
            security_group_ids: data.security_group_ids().to_vec(),
            instance_profile_role,
            tag_specifications,
            has_block_devices: !data.block_device_mappings().is_empty(),
        })
    }

    async fn bucket_policy(&self, bucket: &str) -> Option<Value> {
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&self.base).force_path_style(true).build());
        let policy = s3.get_bucket_policy().bucket(bucket).send().await.ok()?;
        serde_json::from_str(policy.policy()?).ok()
    }
}
