//! EC2: instant fleets for launches, tags for the fleet's membership and draining, placement scores.

use std::collections::HashMap;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, Filter, FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetOnDemandAllocationStrategy, FleetType, InstanceLifecycleType,
    InstanceStateName, InstanceType, OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy, SpotOptionsRequest,
    Tag, TagSpecification, TargetCapacitySpecificationRequest,
};
use chrono::{DateTime, Utc};
use gameforge_contract::CapacityType;
use gameforge_planner::Offering;
use gameforge_planner::fleet::{Worker, WorkerState};
use gameforge_planner::ladder::LaunchRequest;

use super::AwsWorld;
use gameforge_engine::ports::{Compute, LaunchFailure, LaunchOutcome, PortError};

pub const FLEET_TAG: &str = "gameforge:fleet";
pub const DRAINING_TAG: &str = "gameforge:draining";

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn zone_of(request: &LaunchRequest, instance_type: &str, subnet: Option<&str>, zone: Option<&str>) -> Option<String> {
    zone.map(str::to_owned).or_else(|| {
        request
            .overrides
            .iter()
            .find(|o| subnet.is_some_and(|s| s == o.subnet_id) && o.instance_type == instance_type)
            .or_else(|| request.overrides.iter().find(|o| subnet.is_some_and(|s| s == o.subnet_id)))
            .map(|o| o.availability_zone.clone())
    })
}

impl Compute for AwsWorld {
    async fn launch(
        &self,
        request: &LaunchRequest,
        fleet: &str,
        client_token: &str,
    ) -> Result<LaunchOutcome, PortError> {
        let overrides = request
            .overrides
            .iter()
            .map(|o| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(InstanceType::from(o.instance_type.as_str()))
                    .subnet_id(&o.subnet_id)
                    .priority(f64::from(o.priority))
                    .build()
            })
            .collect();
        let capacity = match request.capacity_type {
            CapacityType::Spot => DefaultTargetCapacityType::Spot,
            CapacityType::OnDemand => DefaultTargetCapacityType::OnDemand,
        };
        let sent = self
            .ec2(&request.region)
            .create_fleet()
            .r#type(FleetType::Instant)
            .client_token(client_token)
            .target_capacity_specification(
                TargetCapacitySpecificationRequest::builder()
                    .total_target_capacity(request.count as i32)
                    .default_target_capacity_type(capacity)
                    .build(),
            )
            // Spot from the pools least likely to be interrupted at a fair price; on-demand by our preference.
            .spot_options(
                SpotOptionsRequest::builder()
                    .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                    .build(),
            )
            .on_demand_options(
                OnDemandOptionsRequest::builder()
                    .allocation_strategy(FleetOnDemandAllocationStrategy::Prioritized)
                    .build(),
            )
            .launch_template_configs(
                FleetLaunchTemplateConfigRequest::builder()
                    .launch_template_specification(
                        FleetLaunchTemplateSpecificationRequest::builder()
                            .launch_template_name(&request.launch_template)
                            .version("$Default")
                            .build(),
                    )
                    .set_overrides(Some(overrides))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::Instance).tags(tag(FLEET_TAG, fleet)).build(),
            )
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // A refused call (a quota, a missing template, throttling past the retries) fails every offering.
            Err(error) => match error.as_service_error().and_then(|e| e.code().map(str::to_owned)) {
                Some(code) => {
                    let message = error.as_service_error().and_then(|e| e.message()).unwrap_or_default().to_owned();
                    return Ok(LaunchOutcome {
                        launched: Vec::new(),
                        failures: vec![LaunchFailure { offering: None, code, message }],
                    });
                }
                None => return Err(PortError::sdk("CreateFleet", &error)),
            },
        };
        let now = gameforge_engine::ports::Clock::now(self);
        let mut outcome = LaunchOutcome::default();
        for instance in response.instances() {
            let overrides = instance.launch_template_and_overrides().and_then(|l| l.overrides());
            let instance_type = instance
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .or_else(|| overrides.and_then(|o| o.instance_type()).map(|t| t.as_str().to_owned()))
                .unwrap_or_default();
            let zone = zone_of(
                request,
                &instance_type,
                overrides.and_then(|o| o.subnet_id()),
                overrides.and_then(|o| o.availability_zone()),
            )
            .unwrap_or_default();
            for id in instance.instance_ids() {
                outcome.launched.push(Worker {
                    instance_id: id.clone(),
                    offering: Offering::new(&request.region, &zone, &instance_type, request.capacity_type),
                    state: WorkerState::Pending,
                    launched_at: now,
                    draining_since: None,
                });
            }
        }
        for error in response.errors() {
            let overrides = error.launch_template_and_overrides().and_then(|l| l.overrides());
            let instance_type = overrides.and_then(|o| o.instance_type()).map(|t| t.as_str().to_owned());
            let zone = instance_type.as_deref().and_then(|t| {
                zone_of(
                    request,
                    t,
                    overrides.and_then(|o| o.subnet_id()),
                    overrides.and_then(|o| o.availability_zone()),
                )
            });
            let offering = match (instance_type, zone) {
                (Some(t), Some(z)) => Some(Offering::new(&request.region, &z, &t, request.capacity_type)),
                _ => None,
            };
            outcome.failures.push(LaunchFailure {
                offering,
                code: error.error_code().unwrap_or("Unknown").to_owned(),
                message: error.error_message().unwrap_or_default().to_owned(),
            });
        }
        Ok(outcome)
    }

    async fn workers(&self, fleet: &str, regions: &[String]) -> Result<Vec<Worker>, PortError> {
        let mut workers = Vec::new();
        for region in regions {
            let mut pages = self
                .ec2(region)
                .describe_instances()
                .filters(Filter::builder().name(format!("tag:{FLEET_TAG}")).values(fleet).build())
                .filters(Filter::builder().name("instance-state-name").values("pending").values("running").build())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| PortError::sdk("DescribeInstances", &e))?;
                for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                    let Some(id) = instance.instance_id() else { continue };
                    let draining_since = instance
                        .tags()
                        .iter()
                        .find(|t| t.key() == Some(DRAINING_TAG))
                        .and_then(|t| t.value())
                        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                        .map(|t| t.with_timezone(&Utc));
                    let state = match (draining_since, instance.state().and_then(|s| s.name())) {
                        (Some(_), _) => WorkerState::Draining,
                        (None, Some(InstanceStateName::Running)) => WorkerState::Running,
                        _ => WorkerState::Pending,
                    };
                    let capacity_type = if instance.instance_lifecycle() == Some(&InstanceLifecycleType::Spot) {
                        CapacityType::Spot
                    } else {
                        CapacityType::OnDemand
                    };
                    let zone = instance.placement().and_then(|p| p.availability_zone()).unwrap_or_default();
                    let instance_type = instance.instance_type().map(|t| t.as_str()).unwrap_or_default();
                    let launched_at = instance
                        .launch_time()
                        .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                        .unwrap_or_else(Utc::now);
                    workers.push(Worker {
                        instance_id: id.to_owned(),
                        offering: Offering::new(region, zone, instance_type, capacity_type),
                        state,
                        launched_at,
                        draining_since,
                    });
                }
            }
        }
        Ok(workers)
    }

    async fn mark_draining(&self, region: &str, instance_id: &str, now: DateTime<Utc>) -> Result<(), PortError> {
        self.ec2(region)
            .create_tags()
            .resources(instance_id)
            .tags(tag(DRAINING_TAG, &now.to_rfc3339()))
            .send()
            .await
            .map_err(|e| PortError::sdk("CreateTags", &e))?;
        Ok(())
    }

    async fn terminate(&self, region: &str, instance_ids: &[String]) -> Result<(), PortError> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        self.ec2(region)
            .terminate_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| PortError::sdk("TerminateInstances", &e))?;
        Ok(())
    }

    async fn placement_scores(
        &self,
        regions: &[String],
        instance_types: &[String],
        target: u32,
    ) -> Result<HashMap<String, u8>, PortError> {
        let home = regions.first().cloned().unwrap_or_else(|| "us-east-1".into());
        let answer = self
            .ec2(&home)
            .get_spot_placement_scores()
            .set_instance_types(Some(instance_types.to_vec()))
            .target_capacity(target.max(1) as i32)
            .set_region_names(Some(regions.to_vec()))
            .send()
            .await
            .map_err(|e| PortError::sdk("GetSpotPlacementScores", &e))?;
        Ok(answer
            .spot_placement_scores()
            .iter()
            .filter_map(|s| Some((s.region()?.to_owned(), s.score()?.clamp(0, 10) as u8)))
            .collect())
    }
}
