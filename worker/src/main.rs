//! `sdxl-worker`: one-shot generation now; the queue worker joins it as `serve`.

mod generate;
mod random_model;

use clap::{Parser, Subcommand};

#[derive(Parser)]
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
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::RandomModel(args) => random_model::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
