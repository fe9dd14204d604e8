//! `gameforge-local`: the whole system on this machine. Starts the AWS emulator, deploys `infra/gameforge.yaml`
//! to it, runs the function binaries under a local Lambda runtime API fed by their real event sources, and plays
//! a story through it: every sample event in `events/` published to EventBridge, through the rules, the signals
//! queue and `on-signal`, into control jobs.

mod report;
mod system;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "gameforge-local", about = "Run gameforge locally against the embedded AWS emulator")]
struct Args {
    /// Start the system and keep it running until Ctrl-C, without playing the story.
    #[arg(long, conflicts_with = "publish")]
    no_story: bool,
    /// Keep the system running after the story, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Publish these EventBridge event files instead of every sample in events/.
    #[arg(long, value_name = "FILE")]
    publish: Vec<PathBuf>,
    /// The worker fleet control jobs are written for.
    #[arg(long, default_value = "sdxl")]
    fleet: String,
    /// Give up waiting for the system to settle after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gameforge_aws::telemetry::init_terminal();
    let args = Args::parse();
    let report = report::Report::new();
    let system = system::System::start(&args.fleet, &report).await.context("starting the local system")?;

    if !args.no_story {
        let files = if args.publish.is_empty() { system::sample_events()? } else { args.publish.clone() };
        system.play(&files, Duration::from_secs(args.timeout), &report).await?;
    }
    if args.no_story || args.serve {
        system.describe(&report);
        report.line("serving; Ctrl-C stops everything");
        system.serve_until_interrupted(&report).await?;
    }
    report.line("stopping the function and the emulator");
    drop(system);
    Ok(())
}
