use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The scenario file (see the README for its format; examples in infra/scenarios/).
    scenario: PathBuf,
    /// Print only the summary line.
    #[arg(long)]
    summary_only: bool,
}

pub fn run(args: &SimulateArgs) -> ExitCode {
    let loaded = match gameforge_simulator::load(&args.scenario) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("gameforge: {error}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut broken = false;
    gameforge_simulator::run(&loaded, |line| {
        let is_summary = line.get("summary").is_some();
        if (!args.summary_only || is_summary) && !broken && writeln!(stdout, "{line}").is_err() {
            // A closed pipe (`| head`) ends the output, not the run.
            broken = true;
        }
    });
    ExitCode::SUCCESS
}
