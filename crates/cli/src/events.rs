use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use gameforge_contract::Message;

mod hint;

use hint::Envelope;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Classify one EventBridge event exactly as the on-signal function does, and print the result as one JSON
    /// object. Exits 0 for every EventBridge event (ignored ones included) and 2 for anything else.
    Classify {
        /// A file holding the event, or `-` for standard input.
        input: PathBuf,
        /// Indent the output.
        #[arg(long)]
        pretty: bool,
    },
}

/// Exit status for input that is not an EventBridge event.
const NOT_AN_EVENT: u8 = 2;

pub fn run(command: EventsCommand) -> ExitCode {
    match command {
        EventsCommand::Classify { input, pretty } => match classify(&input, pretty) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("gameforge: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn classify(input: &PathBuf, pretty: bool) -> anyhow::Result<ExitCode> {
    let bytes = read(input)?;
    match gameforge_signals::classify_json(&bytes) {
        Ok(signal) => {
            let text = if pretty {
                serde_json::to_string_pretty(&signal).context("serializing the classification")?
            } else {
                signal.to_json()
            };
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}").context("writing to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let hint = Envelope::detect(&bytes).map(|envelope| format!(" ({})", envelope.hint())).unwrap_or_default();
            eprintln!("gameforge: {}: {error}{hint}", input.display());
            Ok(ExitCode::from(NOT_AN_EVENT))
        }
    }
}

fn read(input: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if input.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("reading standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(input).with_context(|| format!("reading {}", input.display()))
    }
}
