//! `gameforge`: the command-line face of the project.

mod events;
mod jobs;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gameforge", version, about = "GPU capacity failover for SDXL inference on AWS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with EventBridge events as the control plane sees them.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Play a what-if scenario through the executor's own logic against a simulated AWS: one JSON line per
    /// decision and action, then a summary line.
    Simulate(simulate::SimulateArgs),
    /// Submit generation jobs, wait for them, ask their status, cancel them.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Events(command) => events::run(command),
        Command::Simulate(args) => simulate::run(&args),
        Command::Jobs(command) => jobs::run(command),
    }
}
