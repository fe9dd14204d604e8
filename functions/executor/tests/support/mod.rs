//! A control plane in the emulator: the template deployed, worker stamps in several regions, and executors with
//! a clock the test moves.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use executor::aws::{AwsClock, AwsWorld, Resources};
use gameforge_contract::{CONTRACT_VERSION, CapacityType, ControlCommand, ControlJob, InterruptionNotice, NoticeKind};
use gameforge_engine::{Executor, Handled};
use gameforge_localaws::{Deployment, Emulator, RoleCredentials, deploy_standby};
use gameforge_planner::FleetConfig;
use gameforge_planner::config::RegionStamp;
use serde_json::json;

pub struct Rig {
    pub emulator: Emulator,
    /// The account's own access, for what the test does as AWS or as an operator.
    pub config: aws_config::SdkConfig,
    /// The executor's role from the template, enforced: what the executors under test (and their event
    /// sources, as Lambda polls with the function's role) act with.
    pub executor_role: RoleCredentials,
    pub executor_config: aws_config::SdkConfig,
    pub deployment: Deployment,
    pub stamps: Vec<RegionStamp>,
    pub fleet: FleetConfig,
    pub start: DateTime<Utc>,
    jobs_sent: std::sync::atomic::AtomicU32,
}

/// `(region, zones, model uploaded)`, home (the emulator's region, us-east-1) first; every other region is a
/// standby stack of the same template.
pub async fn rig(regions: &[(&str, &[&str], bool)]) -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let (home, home_zones, _) = regions[0];
    assert_eq!(config.region().map(|r| r.as_ref()), Some(home), "the home stack deploys in the emulator's region");
    let deployment = Deployment::deploy_with_zones(&config, "gameforge", home_zones).await.unwrap();
    let mut stamps = vec![deployment.stamp.clone()];
    for (region, zones, _) in &regions[1..] {
        stamps.push(deploy_standby(&config, region, "gameforge", home, zones).await.unwrap());
    }
    for (stamp, (_, _, model)) in stamps.iter().zip(regions) {
        if *model {
            upload_model(&config, stamp).await;
        }
    }
    let fleet = FleetConfig::from_json(
        json!({
            "fleet": "sdxl",
            "home_region": regions[0].0,
            "regions": stamps,
            "instance_types": [
                {"name": "g5.xlarge", "jobs_per_hour": 240, "on_demand_price_per_hour": 1.006},
                {"name": "g4dn.xlarge", "jobs_per_hour": 90, "on_demand_price_per_hour": 0.526}
            ],
            "capacity_types": ["spot", "on_demand"],
            "on_demand": {"max_share": 0.5, "max_hourly_spend": 12.0},
            "workers": {"min": 0, "max": 10, "target_backlog_per_worker": 8, "idle_before_zero": "15m", "scale_in_delay": "10m"},
            "rebalance_policy": "ignore",
            "ledger": {"shortage_ttl": "3m", "shortage_ttl_max": "30m", "quota_ttl": "6h", "interruption_window": "1h"},
            "migration": {"max_interruption_rate": 0.5, "min_interruptions": 3, "hysteresis": "30m", "cooldown": "10m"},
            "retry": {"base": "1s", "cap": "2s"}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let executor_role = emulator.assume_role(&deployment.role_name("executor"), "executor").await.unwrap();
    let executor_config = emulator.sdk_config_as(&executor_role, home).await;
    Rig {
        emulator,
        config,
        executor_role,
        executor_config,
        deployment,
        stamps,
        fleet,
        start: "2026-11-27T10:00:00Z".parse().unwrap(),
        jobs_sent: Default::default(),
    }
}

impl Rig {
    pub fn resources(&self) -> Resources {
        Resources {
            ledger_table: self.deployment.ledger_table.clone(),
            job_queue_url: self.deployment.job_queue_url.clone(),
            any_tier_queue_url: Some(self.deployment.any_tier_queue_url.clone()),
            retry_queue_url: self.deployment.control_retry_url.clone(),
            alert_bus: "default".into(),
        }
    }

    pub fn executor(&self, owner: &str) -> Executor<AwsWorld> {
        let world = AwsWorld::new(self.executor_config.clone(), self.resources(), AwsClock::Manual(self.start.into()));
        Executor::new(self.fleet.clone(), world, owner)
    }

    /// Puts the executor's clock `minutes` after the start.
    pub fn at(&self, executor: &Executor<AwsWorld>, minutes: i64) {
        executor.world().clock().set(self.start + chrono::Duration::minutes(minutes));
    }

    pub async fn add_jobs(&self, n: u32) {
        let sqs = aws_sdk_sqs::Client::new(&self.config);
        for _ in 0..n {
            let i = self.jobs_sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            sqs.send_message()
                .queue_url(&self.deployment.job_queue_url)
                .message_body(format!("job-{i}"))
                .send()
                .await
                .unwrap();
        }
    }

    pub async fn clear_jobs(&self) {
        gameforge_localaws::drain_queue(&self.config, &self.deployment.job_queue_url).await.unwrap();
    }

    pub fn job(&self, id: &str, command: ControlCommand) -> ControlJob {
        ControlJob {
            version: CONTRACT_VERSION,
            control_id: id.into(),
            fleet: "sdxl".into(),
            emitted_at: self.start,
            command,
        }
    }

    /// A spot interruption warning for `instance_id` in us-east-1, observed at `at`, as on-signal sends it.
    pub fn spot_warning(&self, instance_id: &str, at: DateTime<Utc>) -> ControlJob {
        let notice = InterruptionNotice {
            event_id: "spot-1".into(),
            region: "us-east-1".into(),
            instance_id: Some(instance_id.to_owned()),
            notice: NoticeKind::SpotInterruption,
            deadline: Some(at + chrono::Duration::minutes(2)),
            observed_at: Some(at),
            action: None,
            state: None,
            availability_zone: None,
            capacity_type: Some(CapacityType::Spot),
            other_instance_ids: Vec::new(),
            scope: None,
            message: None,
        };
        ControlJob { emitted_at: at, ..self.job("sig-spot-1-0", ControlCommand::HandleInterruption { notice }) }
    }

    pub async fn reconcile(&self, executor: &Executor<AwsWorld>, id: &str) -> Handled {
        executor.handle(&self.job(id, ControlCommand::Reconcile)).await.unwrap()
    }

    /// The fleet's live instances in a region: `(id, instance type, zone, lifecycle)`.
    pub async fn instances(&self, region: &str) -> Vec<(String, String, String, String)> {
        let ec2 = aws_sdk_ec2::Client::new(
            &self.config.to_builder().region(aws_config::Region::new(region.to_owned())).build(),
        );
        let answer = ec2
            .describe_instances()
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:gameforge:fleet").values("sdxl").build())
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap().to_owned(),
                    i.instance_type().unwrap().as_str().to_owned(),
                    i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_owned(),
                    i.instance_lifecycle().map(|l| l.as_str().to_owned()).unwrap_or_else(|| "on-demand".into()),
                )
            })
            .collect()
    }

    pub fn create_fleet_calls(&self, region: &str) -> usize {
        self.emulator
            .faults()
            .requests()
            .iter()
            .filter(|r| r.action.as_deref() == Some("CreateFleet") && r.region.as_deref() == Some(region))
            .count()
    }
}

pub fn journal(handled: &Handled) -> &gameforge_engine::journal::Journal {
    match handled {
        Handled::Done(journal) => journal,
        other => panic!("expected the job to be done, got {other:?}"),
    }
}

/// What an operator does before a region can serve: the weights in its model bucket (here only the file the
/// executor looks for).
async fn upload_model(base: &aws_config::SdkConfig, stamp: &gameforge_planner::config::RegionStamp) {
    let config = base.to_builder().region(aws_config::Region::new(stamp.region.clone())).build();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let location = stamp.model_location.join("model_index.json");
    s3.put_object()
        .bucket(location.bucket())
        .key(location.prefix())
        .body(aws_sdk_s3::primitives::ByteStream::from_static(br#"{"_class_name": "StableDiffusionXLPipeline"}"#))
        .send()
        .await
        .unwrap();
}
