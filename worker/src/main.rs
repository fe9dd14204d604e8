//! `sdxl-worker`: one-shot generation now; the queue worker joins it as `serve`.

mod generate;
mod random_model;
mod serve_cmd;

use clap::{CommandFactory, FromArgMatches, Subcommand};

#[derive(clap::Parser)]
#[command(name = "sdxl-worker", version, about = "SDXL on candle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate one image and write it as a PNG carrying its parameters.
    Generate(generate::Args),
    /// Write a pipeline folder of a given architecture with random weights (for benchmarks and smoke tests).
    RandomModel(random_model::Args),
    /// Serve generation jobs from an SQS queue until stopped (SIGTERM, or a spot interruption notice).
    Serve(serve_cmd::Args),
    /// Copy a remote model (S3 or the Hub) into the model cache and print its folder (to bake weights into an
    /// image, or warm a cache volume).
    Fetch(generate::FetchArgs),
    /// Exit 0 when the worker at the URL is ready (a container health-check command).
    Health(serve_cmd::HealthArgs),
}

fn main() -> std::process::ExitCode {
    let (command, renamed) = gameforge_aws::env::with_former_names(Cli::command());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The service logs JSON lines for the container's log driver; the tools log for a person.
    match cli.command {
        Command::Serve(_) => gameforge_aws::telemetry::init_json("sdxl-worker"),
        _ => gameforge_aws::telemetry::init_terminal(),
    }
    gameforge_aws::env::warn_former_names(&renamed);
    if let Err(e) = sdxl_worker::gpu_ops::GpuOps::from_env() {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::RandomModel(args) => random_model::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Health(args) => serve_cmd::health(args),
        Command::Fetch(args) => generate::fetch_command(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
