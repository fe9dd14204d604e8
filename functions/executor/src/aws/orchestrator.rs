//! ECS (draining, service size, stamp readiness) and the stamp's model in S3.

use aws_sdk_ecs::types::ContainerInstanceStatus;
use gameforge_planner::config::RegionStamp;

use super::AwsWorld;
use gameforge_engine::ports::{Orchestrator, PortError, Readiness};

/// The file every diffusers-format pipeline folder has; its presence means the weights were uploaded.
const MODEL_MARKER: &str = "model_index.json";

impl AwsWorld {
    /// The ECS container instance that runs on an EC2 instance, if it has registered.
    async fn container_instance(
        &self,
        stamp: &RegionStamp,
        instance_id: &str,
    ) -> Result<Option<aws_sdk_ecs::types::ContainerInstance>, PortError> {
        let ecs = self.ecs(&stamp.region);
        let mut pages = ecs.list_container_instances().cluster(&stamp.ecs_cluster).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| PortError::sdk("ListContainerInstances", &e))?;
            let arns = page.container_instance_arns().to_vec();
            if arns.is_empty() {
                continue;
            }
            let described = ecs
                .describe_container_instances()
                .cluster(&stamp.ecs_cluster)
                .set_container_instances(Some(arns))
                .send()
                .await
                .map_err(|e| PortError::sdk("DescribeContainerInstances", &e))?;
            if let Some(found) =
                described.container_instances().iter().find(|c| c.ec2_instance_id() == Some(instance_id))
            {
                return Ok(Some(found.clone()));
            }
        }
        Ok(None)
    }
}

impl Orchestrator for AwsWorld {
    async fn drain(&self, stamp: &RegionStamp, instance_id: &str) -> Result<(), PortError> {
        // An instance that has not joined the cluster yet has nothing to drain.
        let Some(container) = self.container_instance(stamp, instance_id).await? else { return Ok(()) };
        let Some(arn) = container.container_instance_arn() else { return Ok(()) };
        self.ecs(&stamp.region)
            .update_container_instances_state()
            .cluster(&stamp.ecs_cluster)
            .container_instances(arn)
            .status(ContainerInstanceStatus::Draining)
            .send()
            .await
            .map_err(|e| PortError::sdk("UpdateContainerInstancesState", &e))?;
        Ok(())
    }

    async fn tasks_running(&self, stamp: &RegionStamp, instance_id: &str) -> Result<usize, PortError> {
        Ok(self
            .container_instance(stamp, instance_id)
            .await?
            .map_or(0, |c| (c.running_tasks_count() + c.pending_tasks_count()).max(0) as usize))
    }

    async fn set_service_size(&self, stamp: &RegionStamp, service: &str, count: u32) -> Result<(), PortError> {
        self.ecs(&stamp.region)
            .update_service()
            .cluster(&stamp.ecs_cluster)
            .service(service)
            .desired_count(count as i32)
            .send()
            .await
            .map_err(|e| PortError::sdk("UpdateService", &e))?;
        Ok(())
    }

    async fn readiness(&self, stamp: &RegionStamp) -> Result<Readiness, PortError> {
        let ecs = self.ecs(&stamp.region);
        let clusters = ecs
            .describe_clusters()
            .clusters(&stamp.ecs_cluster)
            .send()
            .await
            .map_err(|e| PortError::sdk("DescribeClusters", &e))?;
        let cluster = clusters.clusters().iter().any(|c| c.status() == Some("ACTIVE"));
        let task_definition =
            ecs.describe_task_definition().task_definition(&stamp.task_definition).send().await.is_ok();
        let key = stamp.model_location.join(MODEL_MARKER);
        let model = self.s3(&stamp.region).head_object().bucket(key.bucket()).key(key.prefix()).send().await.is_ok();
        Ok(Readiness { cluster, task_definition, model })
    }
}
