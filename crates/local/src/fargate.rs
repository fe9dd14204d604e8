//! The CPU tier's Fargate service. On AWS, ECS keeps as many tasks of a service running as its desired count
//! (which the executor sets), starts each with the task definition's environment and task role, replaces a task
//! that dies, and stops the extra ones when the count falls: SIGTERM, then the kill after the stop timeout. moto
//! records the count and runs nothing, so this plays that part: one `sdxl-worker serve` process per task, each
//! with its own lane in the chart.

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_config::{Region, SdkConfig};
use gameforge_planner::config::RegionStamp;
use tokio::process::{Child, Command};

use crate::hosts::{WorkerLaunch, follow_output, signal};
use crate::timeline::{InstanceInfo, Timeline};

/// The task definition's `StopTimeout`: how long a stopping task has before ECS kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// The tier's service as the template stamps it in every region.
#[derive(Debug, Clone)]
pub struct CpuServiceSpec {
    /// The ECS service (`CpuWorkerServiceName`, the tier's `ecs_service`).
    pub service: String,
    /// Its task definition's family.
    pub family: String,
    /// What the chart says of a task ("Fargate 16 vCPU").
    pub size: String,
}

struct Task {
    id: String,
    region: String,
    child: Child,
    stopping_since: Option<Instant>,
}

pub struct CpuService {
    config: SdkConfig,
    stamps: Vec<RegionStamp>,
    spec: CpuServiceSpec,
    launch: WorkerLaunch,
    timeline: Timeline,
    tasks: tokio::sync::Mutex<Vec<Task>>,
    started: AtomicU32,
    task_env: Mutex<std::collections::HashMap<String, Vec<(String, String)>>>,
}

impl CpuService {
    pub fn new(
        config: SdkConfig,
        stamps: Vec<RegionStamp>,
        spec: CpuServiceSpec,
        launch: WorkerLaunch,
        timeline: Timeline,
    ) -> Self {
        Self {
            config,
            stamps,
            spec,
            launch,
            timeline,
            tasks: Default::default(),
            started: AtomicU32::new(0),
            task_env: Default::default(),
        }
    }

    fn regional(&self, region: &str) -> SdkConfig {
        self.config.to_builder().region(Region::new(region.to_owned())).build()
    }

    /// Runs [`CpuService::tick`] until the task is dropped.
    pub async fn run(self: Arc<Self>, every: Duration) {
        loop {
            if let Err(error) = self.tick().await {
                tracing::warn!(error = format!("{error:#}"), "cpu service");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One look at each region's service: ends what exited, starts what the count lacks, stops what it exceeds.
    pub async fn tick(&self) -> anyhow::Result<()> {
        for stamp in &self.stamps {
            let desired = self.desired(stamp).await?;
            let mut tasks = self.tasks.lock().await;
            self.reap(&mut tasks);
            let running: Vec<usize> = (0..tasks.len())
                .filter(|&i| tasks[i].region == stamp.region && tasks[i].stopping_since.is_none())
                .collect();
            for _ in running.len()..desired {
                let task = self.start(stamp).await?;
                tasks.push(task);
            }
            // The newest first, as ECS's scale-in picks them here (one zone, no placement strategy to balance).
            for &i in running.iter().rev().take(running.len().saturating_sub(desired)) {
                let task = &mut tasks[i];
                task.stopping_since = Some(Instant::now());
                signal(&task.child, "TERM");
                self.timeline.draining(&task.id);
                self.timeline.line(&task.id, "the service's count fell: ECS stops the task (SIGTERM to the worker)");
            }
            for task in tasks.iter_mut() {
                if task.stopping_since.is_some_and(|at| at.elapsed() > STOP_TIMEOUT) {
                    let _ = task.child.start_kill();
                }
            }
        }
        Ok(())
    }

    async fn desired(&self, stamp: &RegionStamp) -> anyhow::Result<usize> {
        let ecs = aws_sdk_ecs::Client::new(&self.regional(&stamp.region));
        let described = ecs
            .describe_services()
            .cluster(&stamp.ecs_cluster)
            .services(&self.spec.service)
            .send()
            .await
            .context("DescribeServices")?;
        Ok(described.services().first().map_or(0, |s| s.desired_count().max(0) as usize))
    }

    /// Tasks whose worker exited are gone; ECS starts replacements for the count on the next look.
    fn reap(&self, tasks: &mut Vec<Task>) {
        tasks.retain_mut(|task| match task.child.try_wait() {
            Ok(Some(status)) => {
                let how = if task.stopping_since.is_some() { "stopped" } else { "died; ECS replaces it" };
                self.timeline.line(&task.id, format!("CPU worker exited ({status}): task {how}"));
                self.timeline.ended(&task.id);
                false
            }
            _ => true,
        });
    }

    async fn env(&self, stamp: &RegionStamp) -> anyhow::Result<Vec<(String, String)>> {
        if let Some(env) = self.task_env.lock().unwrap_or_else(|p| p.into_inner()).get(&stamp.region) {
            return Ok(env.clone());
        }
        let env = gameforge_localaws::family_environment(&self.config, &stamp.region, &self.spec.family).await?;
        self.task_env.lock().unwrap_or_else(|p| p.into_inner()).insert(stamp.region.clone(), env.clone());
        Ok(env)
    }

    async fn start(&self, stamp: &RegionStamp) -> anyhow::Result<Task> {
        let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("cpu-task-{n}");
        let info = InstanceInfo {
            instance_id: id.clone(),
            region: stamp.region.clone(),
            zone: "fargate".into(),
            instance_type: self.spec.size.clone(),
            lifecycle: "fargate".into(),
        };
        self.timeline.launched(&info);
        let dir = self.launch.scratch.join(&id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut command = Command::new(&self.launch.binary);
        command
            // The task definition's command: no instance metadata on Fargate.
            .args(["serve", "--imds", "off"])
            .envs(self.launch.env.iter().cloned())
            .envs(self.env(stamp).await?)
            .envs(self.launch.task_roles.get(&stamp.region).cloned().unwrap_or_default())
            .env("AWS_REGION", &stamp.region)
            .env("AWS_DEFAULT_REGION", &stamp.region)
            .env("GAMEFORGE_HEALTH_ADDR", "127.0.0.1:0")
            .env("GAMEFORGE_MODEL_CACHE", dir.join("models"))
            .env("HF_HUB_CACHE", dir.join("models/huggingface/hub"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("starting {}", self.launch.binary.display()))?;
        follow_output(&mut child, &id, &self.timeline);
        self.timeline.line(
            &id,
            format!(
                "Fargate task of {} started in {} (model from {})",
                self.spec.service, stamp.region, stamp.model_location
            ),
        );
        Ok(Task { id, region: stamp.region.clone(), child, stopping_since: None })
    }

    /// Tasks running, by region (the stopping ones not counted).
    pub async fn running(&self) -> Vec<(String, String)> {
        let tasks = self.tasks.lock().await;
        tasks.iter().filter(|t| t.stopping_since.is_none()).map(|t| (t.id.clone(), t.region.clone())).collect()
    }

    /// Stops every task (SIGKILL): the local system is shutting down.
    pub async fn shutdown(&self) {
        let mut tasks = self.tasks.lock().await;
        for task in tasks.iter_mut() {
            let _ = task.child.start_kill();
            let _ = task.child.wait().await;
        }
        tasks.clear();
    }
}
