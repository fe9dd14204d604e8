//! `gameforge`: the command-line face of the project.

mod events;
mod fleet;
mod jobs;
mod outcome;
mod simulate;
mod stack;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "gameforge", version, about = "GPU capacity failover for SDXL inference on AWS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The named profile of the shared AWS config files to act as (an IAM Identity Center login, a
    /// credential_process, an assumed role...); default: AWS_PROFILE, then the default chain.
    #[arg(long, global = true)]
    profile: Option<String>,
    /// The AWS region of the deployment's home stack; default: AWS_REGION, then the profile's.
    #[arg(long, global = true)]
    region: Option<String>,
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
    /// See what the fleet does and why, and steer it: pause, resume, pin, unpin, unblock.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
}

fn main() -> ExitCode {
    let (command, renamed) = gameforge_aws::env::with_former_names(Cli::command());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    for (new, old) in renamed {
        eprintln!("gameforge: {old} is a former name: set {new} instead");
    }
    let caller = gameforge_aws::config::Caller { profile: cli.profile, region: cli.region };
    match cli.command {
        Command::Events(command) => events::run(command),
        Command::Simulate(args) => simulate::run(&args),
        Command::Jobs(command) => jobs::run(command, &caller),
        Command::Fleet(command) => fleet::run(command, &caller),
    }
}
