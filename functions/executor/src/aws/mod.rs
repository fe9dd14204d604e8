//! The executor's ports on AWS: DynamoDB for the ledger, EC2 for launches, ECS and S3 for the stamps, SQS for the
//! backlog and the retry queue, EventBridge for alerts. Clients are made per region from one configuration.

mod alerts;
mod compute;
mod orchestrator;
mod queues;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{Region, SdkConfig};
use chrono::{DateTime, Utc};
use rand::Rng;

use gameforge_engine::ports::Clock;

pub use gameforge_fleet::DynamoLedger;

/// Where the executor finds its AWS resources.
#[derive(Debug, Clone)]
pub struct Resources {
    pub ledger_table: String,
    pub job_queue_url: String,
    /// The jobs the CPU tier may serve; absent, that backlog reads as empty.
    pub any_tier_queue_url: Option<String>,
    pub retry_queue_url: String,
    /// The event bus alerts go to.
    pub alert_bus: String,
}

/// The wall clock, or a clock a test moves by hand.
#[derive(Debug)]
pub enum AwsClock {
    System,
    Manual(Mutex<DateTime<Utc>>),
}

impl AwsClock {
    pub fn set(&self, at: DateTime<Utc>) {
        if let AwsClock::Manual(now) = self {
            *now.lock().unwrap_or_else(|p| p.into_inner()) = at;
        }
    }
}

/// Everything the executor talks to, on AWS.
#[derive(Debug)]
pub struct AwsWorld {
    base: SdkConfig,
    resources: Resources,
    clock: AwsClock,
    ledger: DynamoLedger,
    ec2: Mutex<HashMap<String, aws_sdk_ec2::Client>>,
    ecs: Mutex<HashMap<String, aws_sdk_ecs::Client>>,
    s3: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
}

impl AwsWorld {
    /// `base` is the configuration of the control plane's own region (ledger, queues, bus); regional clients
    /// for EC2, ECS and S3 derive from it.
    pub fn new(base: SdkConfig, resources: Resources, clock: AwsClock) -> Self {
        Self {
            ledger: DynamoLedger::new(aws_sdk_dynamodb::Client::new(&base), &resources.ledger_table),
            sqs: aws_sdk_sqs::Client::new(&base),
            events: aws_sdk_eventbridge::Client::new(&base),
            ec2: Mutex::default(),
            ecs: Mutex::default(),
            s3: Mutex::default(),
            base,
            resources,
            clock,
        }
    }

    pub fn clock(&self) -> &AwsClock {
        &self.clock
    }

    fn regional(&self, region: &str) -> SdkConfig {
        self.base.to_builder().region(Region::new(region.to_owned())).build()
    }

    fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let mut clients = self.ec2.lock().unwrap_or_else(|p| p.into_inner());
        clients.entry(region.to_owned()).or_insert_with(|| aws_sdk_ec2::Client::new(&self.regional(region))).clone()
    }

    fn ecs(&self, region: &str) -> aws_sdk_ecs::Client {
        let mut clients = self.ecs.lock().unwrap_or_else(|p| p.into_inner());
        clients.entry(region.to_owned()).or_insert_with(|| aws_sdk_ecs::Client::new(&self.regional(region))).clone()
    }

    fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let mut clients = self.s3.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                // Path-style addressing works against AWS and against an endpoint without bucket subdomains.
                let config = aws_sdk_s3::config::Builder::from(&self.regional(region)).force_path_style(true).build();
                aws_sdk_s3::Client::from_conf(config)
            })
            .clone()
    }
}

impl Clock for AwsWorld {
    fn now(&self) -> DateTime<Utc> {
        match &self.clock {
            AwsClock::System => Utc::now(),
            AwsClock::Manual(now) => *now.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    fn jitter(&self) -> f64 {
        rand::rng().random_range(0.0..1.0)
    }
}

impl gameforge_engine::ports::LedgerStore for AwsWorld {
    async fn load_ledger(
        &self,
        fleet: &str,
    ) -> Result<
        (gameforge_planner::ledger::LedgerView, Option<gameforge_engine::state::FleetState>),
        gameforge_engine::ports::PortError,
    > {
        self.ledger.load_ledger(fleet).await
    }

    async fn put_block(
        &self,
        fleet: &str,
        block: &gameforge_planner::ledger::OfferingBlock,
    ) -> Result<(), gameforge_engine::ports::PortError> {
        self.ledger.put_block(fleet, block).await
    }

    async fn put_quota(
        &self,
        fleet: &str,
        block: &gameforge_planner::ledger::QuotaBlock,
    ) -> Result<(), gameforge_engine::ports::PortError> {
        self.ledger.put_quota(fleet, block).await
    }

    async fn put_interruptions(
        &self,
        fleet: &str,
        region: &str,
        recent: &[gameforge_planner::ledger::Interruption],
    ) -> Result<(), gameforge_engine::ports::PortError> {
        self.ledger.put_interruptions(fleet, region, recent).await
    }

    async fn save_state(
        &self,
        fleet: &str,
        state: &gameforge_engine::state::FleetState,
    ) -> Result<gameforge_engine::ports::SaveOutcome, gameforge_engine::ports::PortError> {
        self.ledger.save_state(fleet, state).await
    }

    async fn lock(
        &self,
        fleet: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<gameforge_engine::ports::LockOutcome, gameforge_engine::ports::PortError> {
        self.ledger.lock(fleet, owner, now, lease).await
    }

    async fn unlock(&self, fleet: &str, owner: &str) -> Result<(), gameforge_engine::ports::PortError> {
        self.ledger.unlock(fleet, owner).await
    }

    async fn is_done(&self, fleet: &str, control_id: &str) -> Result<bool, gameforge_engine::ports::PortError> {
        self.ledger.is_done(fleet, control_id).await
    }

    async fn mark_done(
        &self,
        fleet: &str,
        control_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), gameforge_engine::ports::PortError> {
        self.ledger.mark_done(fleet, control_id, now).await
    }

    async fn record_decisions(
        &self,
        fleet: &str,
        decisions: &gameforge_engine::journal::Decisions,
    ) -> Result<(), gameforge_engine::ports::PortError> {
        self.ledger.record_decisions(fleet, decisions).await
    }

    async fn recent_decisions(
        &self,
        fleet: &str,
        limit: usize,
    ) -> Result<Vec<gameforge_engine::journal::Decisions>, gameforge_engine::ports::PortError> {
        self.ledger.recent_decisions(fleet, limit).await
    }
}
