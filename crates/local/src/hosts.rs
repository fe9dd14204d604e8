//! The fleet's machines. On AWS an instance the executor launches boots, its ECS agent registers it with the
//! region's cluster, ECS starts the worker task on it, stops the task (SIGTERM, then the kill) when the
//! instance drains, and restarts it when it dies; the instance's metadata service carries the spot notice.
//! moto launches instances that run nothing, so this plays that part: one `sdxl-worker serve` process per
//! running instance of the fleet, with the task definition's environment of the instance's region and a
//! metadata endpoint of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::types::Filter;
use chrono::{DateTime, Utc};
use gameforge_planner::config::RegionStamp;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::chart::RunOutcome;
use crate::imds::InstanceMetadata;
use crate::timeline::{InstanceInfo, Timeline};

/// The tag every instance of the fleet carries (the executor's launch template and fleet calls set it).
const FLEET_TAG: &str = "gameforge:fleet";

/// How an instance's worker is started: the binary, the environment every worker shares (the emulator's),
/// and settings a local machine needs beside the task definition's.
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    /// The credentials ECS gives a region's worker tasks: its stamp's task role, by region.
    pub task_roles: HashMap<String, Vec<(String, String)>>,
    pub scratch: PathBuf,
}

struct Host {
    info: InstanceInfo,
    stamp: RegionStamp,
    metadata: InstanceMetadata,
    container_arn: Option<String>,
    task_arn: Option<String>,
    worker: Option<Child>,
    /// ECS was told to stop the task (the instance drains).
    stopping: bool,
    /// When the worker last exited without being asked to, for ECS's restart delay.
    died_at: Option<Instant>,
    starts: u32,
}

/// What the hosts did, for the reliability run's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Workers that exited without being asked to (killed, crashed, or gave up with an error).
    pub workers_died: u32,
    /// Of those, the ones that exited with an error of their own (a status, not a signal) and the ones that
    /// panicked (Rust's exit status 101) or were killed by a signal nobody sent on purpose.
    pub exited_with_error: u32,
    pub panicked: u32,
}

pub struct Hosts {
    config: SdkConfig,
    fleet: String,
    stamps: Vec<RegionStamp>,
    launch: WorkerLaunch,
    timeline: Timeline,
    hosts: tokio::sync::Mutex<BTreeMap<String, Host>>,
    task_env: Mutex<HashMap<String, Vec<(String, String)>>>,
    stats: Mutex<HostStats>,
}

impl Hosts {
    pub fn new(
        config: SdkConfig,
        fleet: &str,
        stamps: Vec<RegionStamp>,
        launch: WorkerLaunch,
        timeline: Timeline,
    ) -> Self {
        Self {
            config,
            fleet: fleet.to_owned(),
            stamps,
            launch,
            timeline,
            hosts: Default::default(),
            task_env: Default::default(),
            stats: Default::default(),
        }
    }

    fn regional(&self, region: &str) -> SdkConfig {
        self.config.to_builder().region(Region::new(region.to_owned())).build()
    }

    pub fn stats(&self) -> HostStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs [`Hosts::tick`] until the task is dropped.
    pub async fn run(self: Arc<Self>, every: Duration) {
        loop {
            if let Err(error) = self.tick().await {
                tracing::warn!(error = format!("{error:#}"), "hosts");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One look at EC2 and ECS: boots what launched, stops what drains, restarts what died, ends what EC2
    /// terminated.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let mut alive: HashMap<String, InstanceInfo> = HashMap::new();
        let mut draining: HashMap<String, bool> = HashMap::new();
        for stamp in &self.stamps {
            for info in self.instances(&stamp.region).await? {
                alive.insert(info.instance_id.clone(), info);
            }
            draining.extend(self.container_states(stamp).await?);
        }
        let mut hosts = self.hosts.lock().await;
        for (id, info) in &alive {
            if !hosts.contains_key(id) {
                let Some(stamp) = self.stamps.iter().find(|s| s.region == info.region).cloned() else { continue };
                let host = self.boot(info.clone(), stamp).await?;
                hosts.insert(id.clone(), host);
            }
        }
        let ids: Vec<String> = hosts.keys().cloned().collect();
        for id in ids {
            let Some(host) = hosts.get_mut(&id) else { continue };
            if !alive.contains_key(&id) {
                self.end(host).await;
                hosts.remove(&id);
                continue;
            }
            if draining.get(&id).copied().unwrap_or(false) && !host.stopping {
                host.stopping = true;
                self.timeline.draining(&id);
                if let Some(worker) = &host.worker {
                    signal(worker, "TERM");
                    self.timeline.line(&id, "ECS stops the task on the draining instance: SIGTERM to the worker");
                }
            }
            self.reap(host).await;
        }
        Ok(())
    }

    /// The fleet's pending and running instances in a region.
    async fn instances(&self, region: &str) -> anyhow::Result<Vec<InstanceInfo>> {
        let ec2 = aws_sdk_ec2::Client::new(&self.regional(region));
        let answer = ec2
            .describe_instances()
            .filters(Filter::builder().name(format!("tag:{FLEET_TAG}")).values(&self.fleet).build())
            .filters(Filter::builder().name("instance-state-name").values("pending").values("running").build())
            .send()
            .await
            .context("DescribeInstances")?;
        Ok(answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                Some(InstanceInfo {
                    instance_id: i.instance_id()?.to_owned(),
                    region: region.to_owned(),
                    zone: i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_owned(),
                    instance_type: i.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                    lifecycle: i.instance_lifecycle().map_or_else(|| "on-demand".into(), |l| l.as_str().to_owned()),
                })
            })
            .collect())
    }

    /// Which registered instances of the stamp's cluster are draining.
    async fn container_states(&self, stamp: &RegionStamp) -> anyhow::Result<HashMap<String, bool>> {
        let ecs = aws_sdk_ecs::Client::new(&self.regional(&stamp.region));
        let arns = ecs
            .list_container_instances()
            .cluster(&stamp.ecs_cluster)
            .send()
            .await
            .context("ListContainerInstances")?;
        let arns = arns.container_instance_arns().to_vec();
        if arns.is_empty() {
            return Ok(HashMap::new());
        }
        let described = ecs
            .describe_container_instances()
            .cluster(&stamp.ecs_cluster)
            .set_container_instances(Some(arns))
            .send()
            .await
            .context("DescribeContainerInstances")?;
        Ok(described
            .container_instances()
            .iter()
            .filter_map(|c| Some((c.ec2_instance_id()?.to_owned(), c.status() == Some("DRAINING"))))
            .collect())
    }

    /// The task definition's container environment in a region, as ECS hands it to the container.
    async fn task_env(&self, stamp: &RegionStamp) -> anyhow::Result<Vec<(String, String)>> {
        if let Some(env) = self.task_env.lock().unwrap_or_else(|p| p.into_inner()).get(&stamp.region) {
            return Ok(env.clone());
        }
        let env = gameforge_localaws::task_environment(&self.config, stamp).await?;
        self.task_env.lock().unwrap_or_else(|p| p.into_inner()).insert(stamp.region.clone(), env.clone());
        Ok(env)
    }

    /// The instance boots: its ECS agent registers it and ECS starts the worker task.
    async fn boot(&self, info: InstanceInfo, stamp: RegionStamp) -> anyhow::Result<Host> {
        self.timeline.launched(&info);
        self.timeline.line(
            &info.instance_id,
            format!("instance up: {} {} in {} — registering with ECS", info.lifecycle, info.instance_type, info.zone),
        );
        let metadata = InstanceMetadata::start(&info).context("instance metadata endpoint")?;
        let ecs = aws_sdk_ecs::Client::new(&self.regional(&stamp.region));
        let identity = serde_json::json!({
            "instanceId": info.instance_id,
            "region": info.region,
            "availabilityZone": info.zone,
            "instanceType": info.instance_type,
        });
        let registered = ecs
            .register_container_instance()
            .cluster(&stamp.ecs_cluster)
            .instance_identity_document(identity.to_string())
            .send()
            .await
            .context("RegisterContainerInstance")?;
        let container_arn = registered.container_instance().and_then(|c| c.container_instance_arn()).map(str::to_owned);
        let mut host = Host {
            info,
            stamp,
            metadata,
            container_arn,
            task_arn: None,
            worker: None,
            stopping: false,
            died_at: None,
            starts: 0,
        };
        if let Err(error) = self.start_task(&mut host).await {
            self.timeline.line(&host.info.instance_id, format!("could not start the worker task yet: {error:#}"));
            host.died_at = Some(Instant::now());
        }
        Ok(host)
    }

    async fn start_task(&self, host: &mut Host) -> anyhow::Result<()> {
        let ecs = aws_sdk_ecs::Client::new(&self.regional(&host.stamp.region));
        let started = ecs
            .start_task()
            .cluster(&host.stamp.ecs_cluster)
            .task_definition(&host.stamp.task_definition)
            .set_container_instances(host.container_arn.clone().map(|a| vec![a]))
            .send()
            .await
            .context("StartTask")?;
        host.task_arn = started.tasks().first().and_then(|t| t.task_arn()).map(str::to_owned);

        let id = host.info.instance_id.clone();
        let dir = self.launch.scratch.join(&id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut command = Command::new(&self.launch.binary);
        command
            .args(["serve", "--cpu"])
            .envs(self.launch.env.iter().cloned())
            .envs(self.task_env(&host.stamp).await?)
            .envs(self.launch.task_roles.get(&host.stamp.region).cloned().unwrap_or_default())
            // What the instance gives the container: its region, its metadata service, a disk for the model.
            .env("AWS_REGION", &host.info.region)
            .env("AWS_DEFAULT_REGION", &host.info.region)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", host.metadata.endpoint())
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
        host.starts += 1;
        host.worker = Some(child);
        self.timeline.line(
            &id,
            format!(
                "worker task started{} (model from {})",
                if host.starts > 1 { format!(" again (start {})", host.starts) } else { String::new() },
                host.stamp.model_location
            ),
        );
        Ok(())
    }

    /// Stops the instance's task; a failed call is tried again on the next look, as the ECS agent does (a task
    /// left running would keep a drained instance from ever being terminated).
    async fn stop_task(&self, host: &mut Host, reason: &str) {
        let Some(task) = host.task_arn.clone() else { return };
        let ecs = aws_sdk_ecs::Client::new(&self.regional(&host.stamp.region));
        match ecs.stop_task().cluster(&host.stamp.ecs_cluster).task(&task).reason(reason).send().await {
            Ok(_) => host.task_arn = None,
            Err(e) => tracing::warn!(error = %aws_sdk_ecs::error::DisplayErrorContext(e), "StopTask"),
        }
    }

    /// Notices a worker that exited: its task stops, and ECS starts it again unless the instance drains.
    async fn reap(&self, host: &mut Host) {
        let id = host.info.instance_id.clone();
        if let Some(worker) = host.worker.as_mut()
            && let Ok(Some(status)) = worker.try_wait()
        {
            host.worker = None;
            self.timeline.job_ended(&id, None, RunOutcome::Lost);
            self.stop_task(host, "Essential container in task exited").await;
            if host.stopping {
                self.timeline
                    .line(&id, format!("worker exited ({status}); the drained instance waits to be terminated"));
            } else {
                let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                stats.workers_died += 1;
                match status.code() {
                    Some(101) => stats.panicked += 1,
                    Some(_) => stats.exited_with_error += 1,
                    None => {}
                }
                drop(stats);
                host.died_at = Some(Instant::now());
                self.timeline.line(&id, format!("worker died ({status}); ECS will start it again"));
            }
        }
        if host.worker.is_none() && host.task_arn.is_some() {
            self.stop_task(host, "Essential container in task exited").await;
        }
        if host.worker.is_none()
            && !host.stopping
            && host.died_at.is_some_and(|at| at.elapsed() > Duration::from_secs(1))
        {
            host.died_at = None;
            if let Err(error) = self.start_task(host).await {
                self.timeline.line(&id, format!("could not start the worker again: {error:#}"));
                host.died_at = Some(Instant::now());
            }
        }
    }

    /// EC2 terminated the instance: whatever ran on it is gone at once.
    async fn end(&self, host: &mut Host) {
        let id = host.info.instance_id.clone();
        if let Some(mut worker) = host.worker.take() {
            let _ = worker.start_kill();
            let _ = worker.wait().await;
            self.timeline.line(&id, "instance terminated under a running worker");
        } else {
            self.timeline.line(&id, "instance terminated");
        }
        self.stop_task(host, "Host EC2 instance terminated").await;
        if let Some(arn) = host.container_arn.take() {
            let ecs = aws_sdk_ecs::Client::new(&self.regional(&host.stamp.region));
            let _ = ecs
                .deregister_container_instance()
                .cluster(&host.stamp.ecs_cluster)
                .container_instance(arn)
                .force(true)
                .send()
                .await;
        }
        self.timeline.ended(&id);
    }

    /// EC2 schedules the spot instance's interruption at `at`: its metadata says so from now on.
    pub async fn interrupt(&self, instance_id: &str, at: DateTime<Utc>) -> bool {
        let hosts = self.hosts.lock().await;
        let Some(host) = hosts.get(instance_id) else { return false };
        host.metadata.interrupt(at);
        self.timeline.noticed(instance_id);
        true
    }

    /// Kills the worker process on an instance at once (SIGKILL), as a crash or an out-of-memory kill would.
    pub async fn kill_worker(&self, instance_id: &str) -> bool {
        let mut hosts = self.hosts.lock().await;
        let Some(worker) = hosts.get_mut(instance_id).and_then(|h| h.worker.as_mut()) else { return false };
        worker.start_kill().is_ok()
    }

    /// The instances with a live worker: `(instance id, region)`.
    pub async fn running(&self) -> Vec<(String, String)> {
        let hosts = self.hosts.lock().await;
        hosts
            .values()
            .filter(|h| h.worker.is_some() && !h.stopping)
            .map(|h| (h.info.instance_id.clone(), h.info.region.clone()))
            .collect()
    }

    pub async fn info(&self, instance_id: &str) -> Option<InstanceInfo> {
        self.hosts.lock().await.get(instance_id).map(|h| h.info.clone())
    }

    /// Stops every worker (SIGKILL): the local system is shutting down.
    pub async fn shutdown(&self) {
        let mut hosts = self.hosts.lock().await;
        for host in hosts.values_mut() {
            if let Some(mut worker) = host.worker.take() {
                let _ = worker.start_kill();
                let _ = worker.wait().await;
            }
        }
    }
}

pub(crate) fn signal(child: &Child, name: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").args([format!("-{name}"), pid.to_string()]).status();
    }
}

/// Follows a worker process's output into the timeline under `id` (its instance or task).
pub(crate) fn follow_output(child: &mut Child, id: &str, timeline: &Timeline) {
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(follow_worker(stdout, id.to_owned(), timeline.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        // What a worker says on its way out (the error it exits with) is on stderr.
        let (timeline, id) = (timeline.clone(), id.to_owned());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if !line.trim().is_empty() {
                    timeline.line(&id, format!("worker stderr: {line}"));
                }
            }
        });
    }
}

/// Turns a worker's JSON log lines into timeline entries.
async fn follow_worker(stdout: tokio::process::ChildStdout, instance_id: String, timeline: Timeline) {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(log) = serde_json::from_str::<Value>(&line) else { continue };
        let job = log["job_id"].as_str().unwrap_or("?");
        match log["message"].as_str().unwrap_or_default() {
            "ready" => timeline.line(&instance_id, "worker ready: model loaded and warm, taking jobs"),
            "job started" => {
                timeline.job_started(&instance_id, job);
                let attempt = log["attempt"].as_u64().unwrap_or(1);
                timeline.line(
                    &instance_id,
                    format!(
                        "job {job} started{}",
                        if attempt > 1 { format!(" (delivery {attempt})") } else { String::new() }
                    ),
                );
            }
            "job finished" => {
                let status = log["status"].as_str().unwrap_or("?").to_ascii_lowercase();
                let outcome = if status == "succeeded" { RunOutcome::Succeeded } else { RunOutcome::Failed };
                timeline.job_ended(&instance_id, Some(job), outcome);
                timeline.line(&instance_id, format!("job {job} {status}"));
            }
            "released: it would not finish before the instance goes" => {
                timeline.job_ended(&instance_id, Some(job), RunOutcome::Released);
                timeline.line(
                    &instance_id,
                    format!("job {job} handed back to the queue: it would not finish before the instance goes"),
                );
            }
            "spot interruption notice: draining" => timeline.line(
                &instance_id,
                format!(
                    "worker read the spot notice (terminate at {}): no new jobs",
                    log["time"].as_str().unwrap_or("?")
                ),
            ),
            "SIGTERM: draining" => {
                timeline.line(&instance_id, "worker got SIGTERM: finishing what it runs, no new jobs")
            }
            "another delivery runs this job" => {
                timeline.line(&instance_id, format!("job {job}: a duplicate delivery, left to its owner"))
            }
            "already final; not running it" => {
                timeline.line(&instance_id, format!("job {job}: already final, not run again"))
            }
            message if log["level"] == "ERROR" || log["level"] == "WARN" => {
                let error = log["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
                timeline.line(&instance_id, format!("worker: {message}{error}"));
            }
            _ => {}
        }
    }
}
