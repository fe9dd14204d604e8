//! `sdxl-worker serve` and `sdxl-worker health`.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gameforge_jobs::DynamoJobStore;
use gameforge_jobs::clients::{dynamodb_for_table, sqs_for_queue};
use gameforge_planner::cpu_tier::CpuTier;
use sdxl_worker::serve::aws::{AwsAnnouncer, S3Objects, SqsJobQueue};
use sdxl_worker::serve::decide::Judge;
use sdxl_worker::serve::health;
use sdxl_worker::serve::imds::Imds;
use sdxl_worker::serve::lanes::Lanes;
use sdxl_worker::serve::model::ModelThread;
use sdxl_worker::serve::runner::{Health, HealthState, Service, ServiceConfig};
use sdxl_worker::serve::stop;
use sdxl_worker::{GenerateRequest, LoadOptions, SdxlPipeline, VaeTiling};
use tokio::sync::watch;

use crate::generate::{DTypeArg, device_and_dtype, memory_size, resolve};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model to serve: a folder, `s3://bucket/prefix` or a Hub repo (fetched into the cache at start).
    #[arg(long, env = "GAMEFORGE_MODEL")]
    model: String,
    /// The name jobs ask for in `model_id` (default: the `--model` argument).
    #[arg(long, env = "GAMEFORGE_MODEL_ID")]
    model_id: Option<String>,
    #[arg(long, env = "GAMEFORGE_MODEL_CACHE")]
    cache_dir: Option<PathBuf>,
    /// The job queue (any region).
    #[arg(long, env = "GAMEFORGE_JOB_QUEUE_URL")]
    queue_url: String,
    /// The any-tier queue, where the fleet has a CPU tier: a GPU worker reads it in turn with the job queue.
    #[arg(long, env = "GAMEFORGE_ANY_TIER_QUEUE_URL")]
    any_tier_queue_url: Option<String>,
    /// Makes this a CPU tier worker: the fleet file's `cpu_tier` (JSON), whose budget and measured pace it judges
    /// jobs by. It reads only the any-tier queue and moves to the job queue what it cannot finish in time.
    #[arg(long, env = "GAMEFORGE_CPU_TIER", value_parser = cpu_tier, requires = "any_tier_queue_url")]
    cpu_tier: Option<Box<CpuTier>>,
    /// The job status store (a table name, or its ARN to reach the home region from a standby).
    #[arg(long, env = "GAMEFORGE_JOBS_TABLE")]
    jobs_table: String,
    /// Days a finished job's record (and its result) stays readable.
    #[arg(long, env = "GAMEFORGE_JOB_RETENTION_DAYS", default_value_t = gameforge_jobs::FINAL_RETENTION_DAYS,
          value_parser = clap::value_parser!(u64).range(1..=3650))]
    job_retention_days: u64,
    /// The EventBridge bus for result and progress events.
    #[arg(long, env = "GAMEFORGE_RESULT_EVENT_BUS", default_value = "default")]
    event_bus: String,
    #[arg(long, env = "GAMEFORGE_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    health_addr: SocketAddr,
    /// Instance metadata endpoint for spot notices and placement, `off` outside EC2; default: AWS's setting
    /// (the profile's `ec2_metadata_service_endpoint`), else the link-local address.
    #[arg(long, env = "AWS_EC2_METADATA_SERVICE_ENDPOINT")]
    imds: Option<String>,
    #[arg(long, env = "GAMEFORGE_IMDS_POLL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    imds_poll_ms: u64,
    /// Seconds a received job stays hidden; renewed every third of it while it runs.
    #[arg(long, env = "GAMEFORGE_VISIBILITY_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    visibility_seconds: u64,
    /// Long-poll wait of one receive (SQS allows at most 20).
    #[arg(long, env = "GAMEFORGE_RECEIVE_WAIT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=20))]
    receive_wait_seconds: u64,
    /// Seconds between SIGTERM and the kill (the ECS task's stopTimeout).
    #[arg(long, env = "GAMEFORGE_STOP_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    stop_timeout_seconds: u64,
    /// Seconds kept free before the kill to store the image and the result.
    #[arg(long, env = "GAMEFORGE_STOP_MARGIN_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    stop_margin_seconds: u64,
    /// A progress event every N steps.
    #[arg(long, env = "GAMEFORGE_PROGRESS_EVERY")]
    progress_every: Option<usize>,
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// At most this much memory for a job's activations (`12GiB`); the GPU's free memory always bounds it.
    #[arg(long, env = "GAMEFORGE_MEMORY_BUDGET", value_parser = memory_size)]
    memory_budget: Option<u64>,
    #[arg(long)]
    cpu: bool,
}

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080/health")]
    url: String,
}

pub fn health(args: HealthArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match runtime.block_on(health::probe(&args.url)) {
        Ok(true) => Ok(()),
        Ok(false) => anyhow::bail!("not ready"),
        Err(e) => anyhow::bail!(e),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let health_state = Arc::new(Health::default());
    let bound = health::serve(args.health_addr, Arc::clone(&health_state)).await.context("health endpoint")?;
    tracing::info!(%bound, "health endpoint");
    let (stop_tx, stop_rx) = watch::channel(None);
    let stop_timeout = Duration::from_secs(args.stop_timeout_seconds);
    stop::on_signals(stop_tx.clone(), stop_timeout)?;

    // The CPU tier runs where there is no GPU to find.
    let (device, dtype) = device_and_dtype(args.cpu || args.cpu_tier.is_some(), args.dtype)?;
    let (model_arg, cache) = (args.model.clone(), args.cache_dir.clone());
    let root = tokio::task::spawn_blocking(move || resolve(&model_arg, cache, dtype)).await??;
    let options = LoadOptions { device, dtype, vae_tiling: VaeTiling::Off, memory_budget: args.memory_budget };
    let model = tokio::task::spawn_blocking(move || {
        ModelThread::start(move || {
            let pipeline = SdxlPipeline::load(&root, options)?;
            // Ready means warm: one step at the native size, guided, so first-job latency is not a surprise.
            let mut warm = GenerateRequest::new("warm-up");
            warm.width = pipeline.default_size();
            warm.height = pipeline.default_size();
            warm.steps = 1;
            pipeline.generate(&warm, &mut |_| ControlFlow::Continue(()))?;
            Ok(pipeline)
        })
    })
    .await?
    .context("loading the model")?;

    let config = gameforge_aws::config::load().await;
    let (queue, max_receives) = SqsJobQueue::connect(sqs_for_queue(&config, &args.queue_url), args.queue_url.clone())
        .await
        .context("the job queue")?;
    let (queue, max_receives) = match &args.any_tier_queue_url {
        None => (Lanes::gpu(queue, None), max_receives),
        Some(url) => {
            let (any_tier, any_max) =
                SqsJobQueue::connect(sqs_for_queue(&config, url), url.clone()).await.context("the any-tier queue")?;
            // One judge for both queues: the sooner of their last deliveries is the one it may not run.
            let max_receives = max_receives.into_iter().chain(any_max).min();
            match args.cpu_tier {
                Some(_) => (Lanes::cpu(queue, any_tier), max_receives),
                None => (Lanes::gpu(queue, Some(any_tier)), max_receives),
            }
        }
    };
    let (dynamodb, table) = dynamodb_for_table(&config, &args.jobs_table);
    let jobs = DynamoJobStore::new(dynamodb, table, Duration::from_secs(args.job_retention_days * 86_400));
    let placement = if args.imds.as_deref() == Some("off") {
        None
    } else {
        let imds = Imds::new(args.imds.as_deref())?;
        stop::on_spot_notice(stop_tx.clone(), imds.clone(), Duration::from_millis(args.imds_poll_ms));
        match imds.placement().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "placement unknown");
                None
            }
        }
    };
    let service = Service {
        queue: Arc::new(queue),
        store: Arc::new(S3Objects::new(&config)),
        jobs: Arc::new(jobs),
        announce: Arc::new(AwsAnnouncer::new(&config, args.event_bus.clone())),
        model,
        judge: Judge {
            model_id: args.model_id.clone().unwrap_or(args.model.clone()),
            max_receives,
            placement,
            cpu_tier: args.cpu_tier.as_deref().cloned(),
        },
        config: ServiceConfig {
            visibility: Duration::from_secs(args.visibility_seconds.max(1)),
            wait: Duration::from_secs(args.receive_wait_seconds),
            margin: Duration::from_secs(args.stop_margin_seconds),
            progress_every: args.progress_every.filter(|n| *n > 0),
            ..ServiceConfig::default()
        },
        health: Arc::clone(&health_state),
    };
    health_state.set(HealthState::Ready);
    tracing::info!(queue = %args.queue_url, any_tier = ?args.any_tier_queue_url, tier = ?service.judge.tier(),
        max_receives = ?max_receives, "ready");
    let summary = service.run(stop_rx).await;
    tracing::info!(?summary, "stopped");
    drop(stop_tx);
    Ok(())
}

/// Boxed: the tier would make `serve`'s arguments far larger than the other commands'.
fn cpu_tier(text: &str) -> Result<Box<CpuTier>, String> {
    CpuTier::from_json(text).map(Box::new).map_err(|e| e.to_string())
}
