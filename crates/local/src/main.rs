//! `gameforge-local`: the whole system on this machine. Starts the AWS emulator, deploys `infra/gameforge.yaml`
//! to it (a home and a standby region), runs the function binaries under local Lambda runtime APIs fed by their
//! real event sources, plays the fleet's machines with `sdxl-worker` processes on a tiny model, and by default
//! plays the scripted story through it.

mod chaos;
mod chart;
mod cloudtrail;
mod fargate;
mod hosts;
mod imds;
mod shortage;
mod story;
mod system;
mod timeline;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gameforge-local", about = "Run gameforge locally against the embedded AWS emulator")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The scripted story (the default): a capacity shortage, a migration, a spot interruption, the way home.
    Story {
        /// Where the timeline, the chart and the images go.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        first_wave: u32,
        #[arg(long, default_value_t = 6)]
        second_wave: u32,
        #[arg(long, default_value_t = 4)]
        third_wave: u32,
        /// Give up on a step of the story that does not happen within this many seconds.
        #[arg(long, default_value_t = 180)]
        step_timeout: u64,
    },
    /// The reliability run: many jobs while workers are killed, AWS throttles and fails, and events arrive
    /// twice or malformed. Prints and writes the report; fails when a job is lost or results disagree.
    Chaos {
        #[arg(long, default_value_t = 1000)]
        jobs: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Mean seconds between worker kills.
        #[arg(long, default_value_t = 12.0)]
        kill_every: f64,
        /// Mean seconds between bursts of AWS errors.
        #[arg(long, default_value_t = 4.0)]
        burst_every: f64,
        /// Mean seconds between duplicated or malformed events and jobs.
        #[arg(long, default_value_t = 2.0)]
        event_every: f64,
        #[arg(long, default_value = "out/reliability")]
        out: PathBuf,
        /// Give up when the jobs are not all final within this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Outage mode: make each AWS service unavailable for this many seconds in turn, then all at once, while
        /// jobs arrive at a steady rate (instead of kills and bursts).
        #[arg(long)]
        outage: Option<u64>,
        /// Deploy with a CPU tier (a file holding the fleet file's `cpu_tier` section): the jobs it admits go to
        /// the any-tier queue, and every GPU worker reads both queues.
        #[arg(long, value_name = "FILE")]
        cpu_tier: Option<PathBuf>,
    },
    /// The CPU tier's story: no GPU anywhere; the tier serves the small jobs on Fargate while the larger ones
    /// wait, GPUs return and serve them, and the tier is drained.
    Shortage {
        /// Where the timeline, the chart and the images go.
        #[arg(long, default_value = "out/shortage")]
        out: PathBuf,
        /// Small jobs (the tier may serve them).
        #[arg(long, default_value_t = 6)]
        small: u32,
        /// Larger jobs (GPU only).
        #[arg(long, default_value_t = 2)]
        large: u32,
        #[arg(long, default_value_t = 180)]
        step_timeout: u64,
    },
    /// The whole system without the story, until Ctrl-C: submit your own jobs and publish your own events.
    Serve,
    /// Only the signal path: publish event samples (every one under events/ by default) and show how each is
    /// classified and which control jobs it asks for.
    Samples {
        files: Vec<PathBuf>,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gameforge_aws::telemetry::init_terminal();
    let args = Args::parse();
    match args.command.unwrap_or(Command::Story {
        out: PathBuf::from("out"),
        first_wave: 10,
        second_wave: 6,
        third_wave: 4,
        step_timeout: 180,
    }) {
        Command::Story { out, first_wave, second_wave, third_wave, step_timeout } => {
            story::run(&story::StoryOptions {
                out,
                first_wave: first_wave.max(1),
                second_wave,
                third_wave: third_wave.max(1),
                step_timeout: Duration::from_secs(step_timeout),
            })
            .await
        }
        Command::Shortage { out, small, large, step_timeout } => {
            shortage::run(&shortage::ShortageOptions {
                out,
                small,
                large,
                step_timeout: Duration::from_secs(step_timeout),
            })
            .await
        }
        Command::Chaos { jobs, seed, kill_every, burst_every, event_every, out, timeout, outage, cpu_tier } => {
            let cpu_tier = match cpu_tier {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    // One line: a stack parameter, and an environment variable of the functions and workers.
                    let tier: serde_json::Value =
                        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
                    Some(tier.to_string())
                }
                None => None,
            };
            let report = chaos::run(&chaos::ChaosOptions {
                jobs,
                seed,
                kill_every,
                burst_every,
                event_every,
                out: out.clone(),
                timeout: Duration::from_secs(timeout),
                outage: outage.map(Duration::from_secs),
                cpu_tier,
            })
            .await?;
            println!("{report}");
            println!("report and timeline in {}", out.display());
            chaos::verdict(&report)
        }
        Command::Serve => {
            let timeline = timeline::Timeline::new();
            let system = system::System::start(&story::system_options(), timeline.clone()).await?;
            system.describe();
            timeline.line("local", "serving; Ctrl-C stops everything");
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            for denial in system.take_iam_denials() {
                timeline.line("iam", format!("denied: {denial}"));
            }
            system.shutdown().await;
            Ok(())
        }
        Command::Samples { files, timeout } => {
            let timeline = timeline::Timeline::new();
            let options =
                system::Options { signal_path_only: true, reconcile_every: Duration::from_secs(60), cpu_tier: None };
            let system = system::System::start(&options, timeline.clone()).await?;
            let files = if files.is_empty() { system::sample_events()? } else { files };
            let published = system.publish_files(&files, Duration::from_secs(timeout)).await;
            timeline.line("local", "stopping the function and the emulator");
            let denied = system.take_iam_denials();
            system.shutdown().await;
            published?;
            if !denied.is_empty() {
                anyhow::bail!("IAM would have denied {} call(s):\n  {}", denied.len(), denied.join("\n  "));
            }
            Ok(())
        }
    }
}
