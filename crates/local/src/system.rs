//! The local system: the emulator, the template deployed as a home stack (us-east-1) and a standby stack
//! (us-west-2), the function binaries under local Lambda runtime APIs fed by their real event sources and the
//! reconcile schedule, CloudTrail's events for launch calls, and the fleet's machines running workers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_config::{Region, SdkConfig};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use gameforge_contract::{ControlJob, Message, Signal};
use gameforge_jobs::{Client, ClientSettings};
use gameforge_localaws::{
    Deployment, Emulator, LambdaHost, LaunchLog, SqsEventSource, deploy_standby_with, tools, with_env,
};
use gameforge_planner::FleetConfig;
use gameforge_planner::config::RegionStamp;
use gameforge_planner::cpu_tier::CpuTier;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::cloudtrail;
use crate::fargate::{CpuService, CpuServiceSpec};
use crate::hosts::{Hosts, WorkerLaunch};
use crate::timeline::Timeline;

/// The stack prefix; `crates/local/fleet.json` names its resources.
pub const PREFIX: &str = "gameforge";
pub const HOME: (&str, &[&str]) = ("us-east-1", &["us-east-1a", "us-east-1b", "us-east-1c"]);
pub const STANDBY: (&str, &[&str]) = ("us-west-2", &["us-west-2a", "us-west-2b"]);

/// The environment file `cargo lambda watch --env-file` takes for one function, in the scratch directory: one per
/// function, because each acts with its own role's credentials as it would on AWS.
fn lambda_env_file(function: &str) -> PathBuf {
    tools::scratch_dir().join(format!("{function}.env"))
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Run only the signal path (no executor, no machines): control jobs stay on their queue.
    pub signal_path_only: bool,
    /// How often the reconcile schedule fires (`rate(1 minute)` on AWS).
    pub reconcile_every: Duration,
    /// The stacks' `CpuTier` parameter (the fleet file's `cpu_tier`, JSON): jobs the tier admits are routed to the
    /// any-tier queue, and GPU workers read both queues.
    pub cpu_tier: Option<String>,
}

pub struct System {
    // Dropped first: the loops, then the machines, the functions, the emulator.
    tasks: Vec<JoinHandle<()>>,
    pub hosts: Arc<Hosts>,
    /// The CPU tier's Fargate service, where the stacks have a CPU tier.
    pub cpu_service: Option<Arc<CpuService>>,
    on_signal: Arc<LambdaHost>,
    executor: Option<Arc<LambdaHost>>,
    /// The account's own access: what the run does as AWS or as the operator.
    pub config: SdkConfig,
    /// The game backend's role (GameBackendPolicy), enforced: what `client` and the backend's reply reader use.
    pub backend: SdkConfig,
    pub deployment: Deployment,
    pub client: Client,
    pub emulator: Emulator,
    pub timeline: Timeline,
    /// The fleet's name, as the executor keeps it in the ledger.
    pub fleet: String,
}

impl Drop for System {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Every single-event sample under `events/`, in a stable order.
pub fn sample_events() -> anyhow::Result<Vec<PathBuf>> {
    let files = tools::event_samples();
    if files.is_empty() {
        bail!("no samples under {}", tools::repo_root().join("events").display());
    }
    Ok(files)
}

/// The binaries are built next to this one (`./dev local` builds them).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe().context("locating gameforge-local")?;
    let path = here.parent().map(|dir| dir.join(name)).context("no directory")?;
    if !path.exists() {
        bail!("{} is missing: build it with `cargo build -p {name}` (./dev local does)", path.display());
    }
    Ok(path)
}

/// The tiny model of the worker's tests: the same architecture and folder layout as SDXL's, small enough for
/// a CPU.
pub fn tiny_model() -> PathBuf {
    tools::repo_root().join("worker/tests/fixtures/tiny-sdxl-a")
}

/// The local fleet: `crates/local/fleet.json` with the deployed stamps as its regions.
fn local_fleet(stamps: &[RegionStamp]) -> anyhow::Result<FleetConfig> {
    let path = tools::repo_root().join("crates/local/fleet.json");
    let mut fleet: Value =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("{}", path.display()))?)
            .with_context(|| format!("{} is not JSON", path.display()))?;
    fleet["regions"] = serde_json::to_value(stamps)?;
    FleetConfig::from_json(fleet.to_string().as_bytes()).with_context(|| format!("{}", path.display()))
}

fn regional(config: &SdkConfig, region: &str) -> SdkConfig {
    config.to_builder().region(Region::new(region.to_owned())).build()
}

/// What an operator does before a region serves: the weights in its model bucket.
async fn upload_model(config: &SdkConfig, stamp: &RegionStamp, folder: &Path) -> anyhow::Result<usize> {
    let s3 = gameforge_jobs::clients::s3(&regional(config, &stamp.region));
    let mut files = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    for file in &files {
        let relative = file.strip_prefix(folder)?.to_string_lossy().replace('\\', "/");
        let key = stamp.model_location.join(&relative);
        s3.put_object()
            .bucket(key.bucket())
            .key(key.prefix())
            .body(aws_sdk_s3::primitives::ByteStream::from_path(file).await?)
            .send()
            .await
            .with_context(|| format!("uploading {}", key))?;
    }
    Ok(files.len())
}

impl System {
    pub async fn start(options: &Options, timeline: Timeline) -> anyhow::Result<Self> {
        let emulator = Emulator::start().context("starting the AWS emulator")?;
        timeline.line(
            "local",
            format!(
                "emulator (moto, pid {}, behind the fault injector) at {}",
                emulator.moto_pid(),
                emulator.endpoint()
            ),
        );
        let config = emulator.sdk_config().await;
        let parameters: Vec<(&str, &str)> = options.cpu_tier.iter().map(|t| ("CpuTier", t.as_str())).collect();
        let deployment = Deployment::deploy_with(&config, PREFIX, HOME.1, &parameters)
            .await
            .context("deploying infra/gameforge.yaml")?;
        let standby = deploy_standby_with(&config, STANDBY.0, PREFIX, HOME.0, STANDBY.1, &parameters)
            .await
            .context("deploying the standby stack")?;
        let stamps = vec![deployment.stamp.clone(), standby];
        timeline.line(
            "local",
            format!(
                "deployed infra/gameforge.yaml: home stack in {} (rules, queues, tables, functions, worker stamp), standby stack in {} (worker stamp, rules forwarding to home)",
                HOME.0, STANDBY.0
            ),
        );
        let fleet = local_fleet(&stamps)?;

        // Every deployed principal acts with its role from the template, and IAM is enforced on it: the
        // functions (and their event sources, which Lambda polls with the function's role), each region's
        // worker tasks, and the game backend (a role of the account's own with the template's GameBackendPolicy).
        // What the local run does as AWS itself (the hosts' ECS agent, CloudTrail, EventBridge's deliveries) and
        // as the account's operator uses the emulator's own key.
        let backend_policy =
            deployment.outputs.get("GameBackendPolicyArn").context("no GameBackendPolicyArn output")?;
        let backend_role = emulator.role_with_policies("game-backend", &[backend_policy]).await?;
        let backend = emulator.sdk_config_as(&backend_role, HOME.0).await;
        // Configured from the home stack's outputs, as `--stack` configures the CLI.
        let settings = ClientSettings::from_lookup(|name| {
            let output = match name {
                "GAMEFORGE_JOB_QUEUE_URL" => "JobQueueUrl",
                "GAMEFORGE_JOBS_TABLE" => "JobsTableArn",
                "GAMEFORGE_ANY_TIER_QUEUE_URL" => "AnyTierJobQueueUrl",
                "GAMEFORGE_CPU_TIER" => "CpuTier",
                _ => return None,
            };
            deployment.outputs.get(output).cloned()
        })?;
        let client = Client::new(&backend, &settings);
        let on_signal_role = emulator.assume_role(&deployment.role_name("on-signal"), "on-signal").await?;
        let executor_role = emulator.assume_role(&deployment.role_name("executor"), "executor").await?;
        let mut worker_roles = HashMap::new();
        for stamp in &stamps {
            let role = format!("{PREFIX}-worker-task-{}", stamp.region);
            let credentials = emulator.assume_role(&role, &format!("worker task {}", stamp.region)).await?;
            worker_roles.insert(stamp.region.clone(), credentials.env());
        }
        let mut on_signal_env = emulator.env_as(&on_signal_role);
        on_signal_env.extend(with_env(
            deployment.function_env(&config, "on-signal").await?,
            "GAMEFORGE_FLEET",
            &fleet.fleet,
        ));
        // The executor's environment is the deployed one with the local fleet file: the emulator's subnet ids, and
        // minutes compressed to seconds so that the story fits in minutes.
        let mut executor_env = emulator.env_as(&executor_role);
        executor_env.extend(with_env(
            deployment.function_env(&config, "executor").await?,
            "GAMEFORGE_FLEET_CONFIG",
            &serde_json::to_string(&fleet)?,
        ));
        let submit_role = emulator.assume_role(&deployment.role_name("submit"), "submit").await?;
        let mut submit_env = emulator.env_as(&submit_role);
        submit_env.extend(deployment.function_env(&config, "submit").await?);
        for (function, env) in [("on-signal", &on_signal_env), ("submit", &submit_env)] {
            let env_file = lambda_env_file(function);
            std::fs::write(&env_file, env_file_text(env)?)
                .with_context(|| format!("writing {}", env_file.display()))?;
        }

        let mut tasks = Vec::new();
        let on_signal =
            Arc::new(LambdaHost::start(&sibling_binary("on-signal")?, "gameforge-on-signal", &on_signal_env)?);
        let cold = on_signal.wait_ready(Duration::from_secs(30)).await.context("on-signal did not start")?;
        timeline.line("local", format!("on-signal running under a local Lambda runtime API (cold start {cold:.1?})"));
        let signals =
            SqsEventSource::new(&emulator.sdk_config_as(&on_signal_role, HOME.0).await, &deployment.signals_queue_url)
                .await?
                .wait(Duration::from_secs(1))
                .invoke_timeout(deployment.function_timeout(&config, "on-signal").await?);
        tasks.push(tokio::spawn(feed(signals, on_signal.clone())));
        tasks.push(tokio::spawn(follow(on_signal.clone(), timeline.clone(), on_signal_entry)));

        let models = tools::scratch_dir().join("hosts");
        let launch =
            WorkerLaunch { binary: PathBuf::new(), env: Vec::new(), task_roles: HashMap::new(), scratch: models };
        let mut hosts = Arc::new(Hosts::new(config.clone(), &fleet.fleet, stamps.clone(), launch, timeline.clone()));
        let mut executor = None;
        let mut cpu_service = None;
        if !options.signal_path_only {
            let host = Arc::new(LambdaHost::start(&sibling_binary("executor")?, "gameforge-executor", &executor_env)?);
            let cold = host.wait_ready(Duration::from_secs(30)).await.context("executor did not start")?;
            timeline
                .line("local", format!("executor running under a local Lambda runtime API (cold start {cold:.1?})"));
            let executor_config = emulator.sdk_config_as(&executor_role, HOME.0).await;
            let executor_timeout = deployment.function_timeout(&config, "executor").await?;
            for queue in [&deployment.control_queue_url, &deployment.control_retry_url] {
                let source = SqsEventSource::new(&executor_config, queue)
                    .await?
                    .wait(Duration::from_secs(1))
                    .invoke_timeout(executor_timeout);
                tasks.push(tokio::spawn(feed(source, host.clone())));
            }
            tasks.push(tokio::spawn(schedule(host.clone(), options.reconcile_every)));
            tasks.push(tokio::spawn(follow(host.clone(), timeline.clone(), executor_entry)));
            timeline.line(
                "local",
                format!(
                    "event sources: signals → on-signal; control FIFO and retry queue → executor; reconcile every {:?}",
                    options.reconcile_every
                ),
            );
            for stamp in &stamps {
                let files = upload_model(&config, stamp, &tiny_model()).await?;
                timeline
                    .line("local", format!("uploaded the tiny SDXL model ({files} files) to {}", stamp.model_location));
            }
            let launch = WorkerLaunch {
                binary: sibling_binary("sdxl-worker")?,
                env: emulator.env(),
                task_roles: worker_roles,
                scratch: tools::scratch_dir().join("hosts"),
            };
            let _ = std::fs::remove_dir_all(&launch.scratch);
            if let Some(tier) = &options.cpu_tier {
                let mut cpu_roles = HashMap::new();
                for stamp in &stamps {
                    let role = format!("{PREFIX}-cpu-worker-task-{}", stamp.region);
                    let credentials = emulator.assume_role(&role, &format!("cpu worker task {}", stamp.region)).await?;
                    cpu_roles.insert(stamp.region.clone(), credentials.env());
                }
                let tier = CpuTier::from_json(tier).context("the CPU tier")?;
                let spec = CpuServiceSpec {
                    service: deployment.outputs.get("CpuWorkerServiceName").context("no CpuWorkerServiceName")?.clone(),
                    family: format!("{PREFIX}-sdxl-cpu-worker"),
                    size: format!("Fargate {} vCPU", tier.vcpus),
                };
                let launch = WorkerLaunch { task_roles: cpu_roles, ..launch.clone() };
                let service = Arc::new(CpuService::new(config.clone(), stamps.clone(), spec, launch, timeline.clone()));
                tasks.push(tokio::spawn(service.clone().run(Duration::from_millis(500))));
                cpu_service = Some(service);
            }
            hosts = Arc::new(Hosts::new(config.clone(), &fleet.fleet, stamps.clone(), launch, timeline.clone()));
            tasks.push(tokio::spawn(hosts.clone().run(Duration::from_millis(500))));
            tasks.push(tokio::spawn(play_cloudtrail(emulator.faults().launch_log(), config.clone(), timeline.clone())));
            tasks.push(tokio::spawn(sample_backlog(
                config.clone(),
                deployment.job_queue_url.clone(),
                timeline.clone(),
            )));
            executor = Some(host);
        }
        let fleet = fleet.fleet;
        Ok(Self {
            tasks,
            hosts,
            cpu_service,
            on_signal,
            executor,
            config,
            backend,
            deployment,
            client,
            emulator,
            timeline,
            fleet,
        })
    }

    /// Publishes each file to the emulator's default event bus and waits until the signal path has handled
    /// every routed event.
    pub async fn publish_files(&self, files: &[PathBuf], timeout: Duration) -> anyhow::Result<()> {
        self.timeline.line("local", format!("publishing {} events to EventBridge", files.len()));
        for file in files {
            let event: Value =
                serde_json::from_slice(&std::fs::read(file).with_context(|| format!("reading {}", file.display()))?)
                    .with_context(|| format!("{} is not JSON", file.display()))?;
            let text = |key: &str| {
                event[key].as_str().map(str::to_owned).with_context(|| format!("{}: no {key}", file.display()))
            };
            let resources: Vec<String> = event["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            publish(&self.config, HOME.0, &text("source")?, &text("detail-type")?, &event["detail"], &resources)
                .await?;
        }
        self.wait_signals_settled(timeout).await?;
        let control = self.depth(&self.deployment.control_queue_url).await?;
        let dead = self.depth(&self.deployment.signals_dead_letter_url).await?;
        self.timeline.line(
            "local",
            format!(
                "settled: {control} control job(s) waiting on {} for the executor, {dead} signal(s) dead-lettered",
                self.deployment.control_queue_url.rsplit('/').next().unwrap_or_default()
            ),
        );
        Ok(())
    }

    /// Waits until the signals queue is empty and on-signal has been quiet for a moment.
    pub async fn wait_signals_settled(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut quiet_since = tokio::time::Instant::now();
        let mut seen = self.on_signal.logs_since(0).len();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let logs = self.on_signal.logs_since(0).len();
            if logs != seen {
                seen = logs;
                quiet_since = tokio::time::Instant::now();
            }
            if self.depth(&self.deployment.signals_queue_url).await? == 0
                && quiet_since.elapsed() > Duration::from_secs(2)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the signals queue did not drain within {timeout:?}");
            }
        }
    }

    pub async fn depth(&self, url: &str) -> anyhow::Result<usize> {
        Ok(gameforge_localaws::queue_depth(&self.config, url).await?)
    }

    /// Every call a deployed principal made that IAM would have denied, taken (so that the emulator does not
    /// fail its owner for them again when it goes): a run fails on any.
    pub fn take_iam_denials(&self) -> Vec<String> {
        self.emulator.iam().take_denials().iter().map(ToString::to_string).collect()
    }

    /// Function processes that exited (crashed) while the system ran.
    pub fn function_exits(&self) -> u32 {
        let exited = |host: &LambdaHost| u32::from(host.exit_status().is_some());
        exited(&self.on_signal) + self.executor.as_deref().map_or(0, exited)
    }

    pub fn on_signal_logs(&self) -> Vec<String> {
        self.on_signal.logs_since(0)
    }

    /// How to reach the running system from another terminal.
    pub fn describe(&self) {
        let t = &self.timeline;
        let endpoint = self.emulator.endpoint();
        t.line("local", format!("AWS_ENDPOINT_URL={endpoint} (any credentials, region {})", HOME.0));
        t.line("local", format!("job queue {}", self.deployment.job_queue_url));
        t.line(
            "local",
            format!("jobs table {}  output bucket {}", self.deployment.jobs_table, self.deployment.output_bucket),
        );
        // The CLI beside this binary, wherever the build put it (tests/local_run.rs runs this line as printed).
        let cli = sibling_binary("gameforge").unwrap_or_else(|_| PathBuf::from("target/debug/gameforge"));
        t.line(
            "local",
            format!(
                "submit a job: AWS_ENDPOINT_URL={endpoint} AWS_REGION={} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
                 {} jobs submit --queue-url {} --jobs-table {} --model {} --output-prefix s3://{}/mine \
                 --width 64 --height 64 --steps 10 --prompt 'a lighthouse at dusk' --wait --out ./out/mine",
                HOME.0,
                cli.display(),
                self.deployment.job_queue_url,
                self.deployment.jobs_table,
                crate::story::MODEL_ID,
                self.deployment.output_bucket
            ),
        );
        let fleet = &self.fleet;
        t.line(
            "local",
            format!(
                "see the fleet: AWS_ENDPOINT_URL={endpoint} AWS_REGION={} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
                 {} fleet status --fleet {fleet} --ledger-table {} --control-queue-url {}",
                HOME.0,
                cli.display(),
                self.deployment.ledger_table,
                self.deployment.control_queue_url,
            ),
        );
        t.line(
            "local",
            "the same settings steer it: fleet explain, pause --reason …, resume, pin REGION, unpin, unblock PATTERN",
        );
        t.line(
            "local",
            format!("publish your own events: AWS_ENDPOINT_URL={endpoint} aws events put-events --entries file://entries.json"),
        );
        t.line(
            "local",
            format!(
                "or run a function under cargo lambda with its role: cargo lambda watch -p on-signal --env-file {} then cargo lambda invoke on-signal --data-file events/ec2/spot-interruption-warning-terminate.json",
                lambda_env_file("on-signal").display()
            ),
        );
    }

    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.hosts.shutdown().await;
        if let Some(service) = &self.cpu_service {
            service.shutdown().await;
        }
    }
}

/// Publishes an event to a region's default bus the way an AWS service does.
pub async fn publish(
    config: &SdkConfig,
    region: &str,
    source: &str,
    detail_type: &str,
    detail: &Value,
    resources: &[String],
) -> anyhow::Result<()> {
    let events = aws_sdk_eventbridge::Client::new(&regional(config, region));
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source(source)
        .detail_type(detail_type)
        .detail(detail.to_string())
        .set_resources(Some(resources.to_vec()))
        .build();
    let put = events.put_events().entries(entry).send().await.context("PutEvents")?;
    if put.failed_entry_count() > 0 {
        bail!("EventBridge refused a {detail_type} event");
    }
    Ok(())
}

/// An event source mapping: polls its queue and invokes the function, forever.
/// An outage is reported when it starts and when it ends, not once a second while it lasts.
async fn feed(source: SqsEventSource, host: Arc<LambdaHost>) {
    let mut failures = 0u64;
    loop {
        match source.poll_once(&host).await {
            Ok(_) if failures > 0 => {
                tracing::info!(failures, "event source polling again");
                failures = 0;
            }
            Ok(_) => {}
            Err(error) => {
                if failures == 0 {
                    tracing::warn!(%error, "event source cannot poll; retrying every second");
                }
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The reconcile schedule: EventBridge's `Scheduled Event`, invoked directly as the schedule rule does.
async fn schedule(host: Arc<LambdaHost>, every: Duration) {
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(every).await;
        tick += 1;
        // EventBridge stamps events to the second.
        let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0);
        let mut event = EventBridgeEvent::<Value>::default();
        event.version = Some("0".into());
        event.id = Some(format!("local-{}-{tick}", now.timestamp()));
        event.detail_type = "Scheduled Event".into();
        event.source = "aws.events".into();
        event.account = Some("123456789012".into());
        event.time = Some(now);
        event.region = Some(HOME.0.into());
        event.resources = Some(vec![format!("arn:aws:events:{}:123456789012:rule/{PREFIX}-reconcile", HOME.0)]);
        event.detail = json!({});
        let event = serde_json::to_value(&event).unwrap_or_default();
        if let Err(error) = host.invoke(&event, Duration::from_secs(60)).await {
            tracing::warn!(%error, "scheduled reconcile");
        }
    }
}

/// CloudTrail: every launch call with capacity errors becomes an `AWS API Call via CloudTrail` event on the
/// call's region's bus, a moment after the call, as AWS delivers them.
async fn play_cloudtrail(calls: LaunchLog, config: SdkConfig, timeline: Timeline) {
    let mut next = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let new = calls.since(next);
        next += new.len();
        for (i, call) in new.iter().enumerate() {
            let id = format!("local-ct-{}-{}", next, i);
            let Some(detail) = cloudtrail::detail(call, &id) else { continue };
            match publish(&config, &call.region, cloudtrail::SOURCE, cloudtrail::DETAIL_TYPE, &detail, &[]).await {
                Ok(()) => timeline.line(
                    "aws",
                    format!(
                        "CloudTrail: {} in {} had {} capacity error(s) → EventBridge",
                        call.action,
                        call.region,
                        call.failed.len()
                    ),
                ),
                Err(error) => tracing::warn!(error = format!("{error:#}"), "publishing a CloudTrail event"),
            }
        }
    }
}

async fn sample_backlog(config: SdkConfig, queue_url: String, timeline: Timeline) {
    let sqs = aws_sdk_sqs::Client::new(&config);
    loop {
        let answer = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await;
        if let Ok(answer) = answer {
            let get = |name| answer.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(0);
            timeline.backlog(
                get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
                get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Hands each of a function's JSON log lines to `each` as it arrives.
async fn follow(host: Arc<LambdaHost>, timeline: Timeline, each: fn(&Value, &Timeline)) {
    let mut next = 0;
    loop {
        let lines = host.logs_since(next);
        next += lines.len();
        for line in lines {
            if let Ok(log) = serde_json::from_str::<Value>(&line) {
                each(&log, &timeline);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An on-signal log line as a timeline entry.
fn on_signal_entry(log: &Value, timeline: &Timeline) {
    match log["message"].as_str() {
        Some("classified") => {
            if let Some(signal) = log["signal"].as_str().and_then(|s| Signal::from_json(s.as_bytes()).ok()) {
                timeline.signal(
                    log["source"].as_str().unwrap_or("?"),
                    log["detail_type"].as_str().unwrap_or("?"),
                    &signal,
                );
            }
        }
        Some("control job sent") => {
            if let Some(job) = log["control_job"].as_str().and_then(|s| ControlJob::from_json(s.as_bytes()).ok()) {
                timeline.control_job(&job);
            }
        }
        Some("duplicate event, already processed") => {
            timeline.line("signals", format!("duplicate event {}, already handled", log["event_id"]))
        }
        Some(other) if log["level"] == "WARN" || log["level"] == "ERROR" => {
            timeline.line("signals", format!("on-signal: {other}"))
        }
        _ => {}
    }
}

/// An executor log line (its decisions) as a timeline entry.
fn executor_entry(log: &Value, timeline: &Timeline) {
    match log["message"].as_str() {
        Some("decision") => {
            if let Some(entry) = log["event"].as_str().and_then(|e| serde_json::from_str::<Value>(e).ok()) {
                timeline.decision(&entry);
            }
        }
        Some(other) if log["level"] == "WARN" || log["level"] == "ERROR" => {
            let error = log["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
            timeline.line("executor", format!("{other}{error}"))
        }
        _ => {}
    }
}

/// The environment as `cargo lambda watch --env-file` reads it. Every value is single-quoted: its parser refuses an
/// unquoted `=` inside a value, and an assumed role's session token ends in base64 padding.
fn env_file_text(vars: &[(String, String)]) -> anyhow::Result<String> {
    let mut text = String::new();
    for (key, value) in vars {
        if value.contains(['\'', '\n', '\r']) {
            bail!("{key} cannot be written to an environment file: its value holds a quote or a line break");
        }
        text.push_str(&format!("{key}='{value}'\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::env_file_text;

    #[test]
    fn values_with_padding_are_quoted_and_unwritable_ones_refused() {
        let vars = [("AWS_SESSION_TOKEN".to_string(), "FQo+b/c==".to_string())];
        assert_eq!(env_file_text(&vars).unwrap(), "AWS_SESSION_TOKEN='FQo+b/c=='\n");
        let quoted = [("X".to_string(), "it's".to_string())];
        assert!(env_file_text(&quoted).unwrap_err().to_string().contains("X cannot be written"));
    }
}
