//! The local system: emulator, deployed template, functions and their event sources.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gameforge_contract::{ControlJob, Message, Signal};
use gameforge_localaws::{Deployment, Emulator, LambdaHost, SqsEventSource, queue_depth, tools, with_env};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::report::Report;

pub struct System {
    // Drop order: event source, then the function, then the emulator.
    poller: JoinHandle<()>,
    printer: JoinHandle<()>,
    on_signal: Arc<LambdaHost>,
    config: aws_config::SdkConfig,
    deployment: Deployment,
    emulator: Emulator,
}

impl Drop for System {
    fn drop(&mut self) {
        self.poller.abort();
        self.printer.abort();
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

/// The environment file for `cargo lambda watch`, in the scratch directory.
const LAMBDA_ENV: &str = "lambda.env";

/// The function binaries are built next to this one (`./dev local` builds them).
fn function_binary(name: &str) -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe().context("locating gameforge-local")?;
    let path = here.parent().map(|dir| dir.join(name)).context("no directory")?;
    if !path.exists() {
        bail!("{} is missing: build it with `cargo build -p {name}` (./dev local does)", path.display());
    }
    Ok(path)
}

impl System {
    pub async fn start(fleet: &str, report: &Report) -> anyhow::Result<Self> {
        let emulator = Emulator::start().context("starting the AWS emulator")?;
        report.line(format!(
            "emulator (moto, pid {}, behind the fault injector) at {}",
            emulator.moto_pid(),
            emulator.endpoint()
        ));
        let config = emulator.sdk_config().await;
        let deployment = Deployment::deploy(&config, "gameforge").await.context("deploying infra/gameforge.yaml")?;
        report.line(
            "deployed infra/gameforge.yaml: EventBridge rules, signals queue + DLQ, dedup table, control FIFO + DLQ",
        );

        let mut env = emulator.env();
        env.extend(with_env(deployment.function_env(&config, "on-signal").await?, "GAMEFORGE_FLEET", fleet));
        // `cargo lambda watch` takes one environment for every function it serves.
        let mut lambda_env = env.clone();
        lambda_env.extend(deployment.function_env(&config, "submit").await?);
        let env_file = tools::scratch_dir().join(LAMBDA_ENV);
        std::fs::write(&env_file, lambda_env.iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>())
            .with_context(|| format!("writing {}", env_file.display()))?;

        let on_signal = Arc::new(LambdaHost::start(&function_binary("on-signal")?, "on-signal", &env)?);
        let cold = on_signal.wait_ready(Duration::from_secs(30)).await.context("on-signal did not start")?;
        report.line(format!("on-signal running under a local Lambda runtime API (cold start {cold:.1?})"));

        let source = SqsEventSource::new(&config, &deployment.signals_queue_url).await?.wait(Duration::from_secs(1));
        let host = on_signal.clone();
        let poller = tokio::spawn(async move {
            loop {
                if let Err(error) = source.poll_once(&host).await {
                    tracing::warn!(%error, "event source");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        report.line("SQS event source: signals queue → on-signal, 10 records per batch, partial batch failures");
        let printer = tokio::spawn(print_function_logs(on_signal.clone(), report.clone()));
        Ok(Self { poller, printer, on_signal, config, deployment, emulator })
    }

    /// Publishes each file to the emulator's default event bus, as AWS services would, and waits until every
    /// routed event has been handled.
    pub async fn play(&self, files: &[PathBuf], timeout: Duration, report: &Report) -> anyhow::Result<()> {
        let events = aws_sdk_eventbridge::Client::new(&self.config);
        report.line(format!("publishing {} events to EventBridge", files.len()));
        for file in files {
            let event: Value =
                serde_json::from_slice(&std::fs::read(file).with_context(|| format!("reading {}", file.display()))?)
                    .with_context(|| format!("{} is not JSON", file.display()))?;
            let text = |key: &str| {
                event[key].as_str().map(str::to_owned).with_context(|| format!("{}: no {key}", file.display()))
            };
            let resources =
                event["resources"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_owned));
            let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(text("source")?)
                .detail_type(text("detail-type")?)
                .detail(event["detail"].to_string())
                .set_resources(Some(resources.collect()))
                .build();
            let put = events.put_events().entries(entry).send().await.context("PutEvents")?;
            if put.failed_entry_count() > 0 {
                bail!("EventBridge refused {}", file.display());
            }
        }
        self.wait_settled(timeout).await?;
        let control = self.depth(&self.deployment.control_queue_url).await?;
        let dead = self.depth(&self.deployment.signals_dead_letter_url).await?;
        report.line(format!(
            "settled: {control} control job(s) waiting on {} for the executor, {dead} signal(s) dead-lettered",
            queue_name(&self.deployment.control_queue_url)
        ));
        Ok(())
    }

    /// Waits until the signals queue is empty and the function has been quiet for a moment.
    async fn wait_settled(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut quiet_since = Instant::now();
        let mut seen = self.on_signal.logs_since(0).len();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let logs = self.on_signal.logs_since(0).len();
            if logs != seen {
                seen = logs;
                quiet_since = Instant::now();
            }
            if self.depth(&self.deployment.signals_queue_url).await? == 0
                && quiet_since.elapsed() > Duration::from_secs(2)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the signals queue did not drain within {timeout:?}");
            }
        }
    }

    async fn depth(&self, url: &str) -> anyhow::Result<usize> {
        Ok(queue_depth(&self.config, url).await?)
    }

    /// How to reach the running system from another terminal.
    pub fn describe(&self, report: &Report) {
        let env_file = tools::scratch_dir().join(LAMBDA_ENV);
        report.line(format!("AWS_ENDPOINT_URL={} (any credentials, region us-east-1)", self.emulator.endpoint()));
        report.line(format!("signals queue {}", self.deployment.signals_queue_url));
        report.line(format!("control queue {}", self.deployment.control_queue_url));
        report.line(format!(
            "publish your own events: AWS_ENDPOINT_URL={} aws events put-events --entries file://entries.json",
            self.emulator.endpoint()
        ));
        report.line(format!(
            "or run the function under cargo lambda: cargo lambda watch --env-file {} then cargo lambda invoke on-signal --data-file events/ec2/spot-interruption-warning-terminate.json",
            env_file.display()
        ));
    }

    pub async fn serve_until_interrupted(&self, _report: &Report) -> anyhow::Result<()> {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        Ok(())
    }
}

fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Turns the function's JSON log lines into readable report lines as they arrive.
async fn print_function_logs(host: Arc<LambdaHost>, report: Report) {
    let mut next = 0;
    loop {
        let lines = host.logs_since(next);
        next += lines.len();
        for line in lines {
            let Ok(log) = serde_json::from_str::<Value>(&line) else { continue };
            match log["message"].as_str() {
                Some("classified") => {
                    if let Some(signal) = log["signal"].as_str().and_then(|s| Signal::from_json(s.as_bytes()).ok()) {
                        report.signal(
                            log["source"].as_str().unwrap_or("?"),
                            log["detail_type"].as_str().unwrap_or("?"),
                            &signal,
                        );
                    }
                }
                Some("control job sent") => {
                    if let Some(job) =
                        log["control_job"].as_str().and_then(|s| ControlJob::from_json(s.as_bytes()).ok())
                    {
                        report.control_job(&job);
                    }
                }
                Some("duplicate event, already processed") => report.line(format!("duplicate {}", log["event_id"])),
                Some(other) if log["level"] == "WARN" || log["level"] == "ERROR" => {
                    report.line(format!("on-signal: {other}"))
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
