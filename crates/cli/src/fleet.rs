//! `gameforge fleet`: what the fleet is doing and why, and an operator's instructions to the executor. Everything
//! is read from the ledger the executor keeps (an operator needs no EC2 access) and every instruction is a control
//! job on the fleet's ordered control queue, so that it is applied by the executor under the fleet's lock like
//! any other, and journaled.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use gameforge_aws::config::Caller;
use gameforge_contract::{CONTRACT_VERSION, ControlCommand, ControlJob, OperatorAction};
use gameforge_engine::journal::{Decisions, Event};
use gameforge_engine::ports::LedgerStore;
use gameforge_engine::status::{FleetStatus, write_decisions};
use gameforge_fleet::{ControlQueue, DynamoLedger};
use rand::Rng;

use crate::outcome::{Failure, exit};

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Where the fleet runs and why, its workers and backlog, what is blocked until when, whether it may launch,
    /// and its last decisions.
    Status(StatusArgs),
    /// The executor's last decisions, in words (or `--json`).
    Explain(ExplainArgs),
    /// Stop launching (draining and scaling in go on) until `resume`.
    Pause(PauseArgs),
    /// Launch again; also lifts a stop for a configuration error once it is fixed.
    Resume(InstructionArgs),
    /// Keep the fleet in REGION: it moves there now and never leaves on its own, nor returns home.
    Pin(PinArgs),
    /// Let the fleet move on its own again.
    Unpin(InstructionArgs),
    /// Put blocked offerings back into placement: PATTERN is a ledger key's first parts, `*` for any part
    /// (`us-east-1`, `us-east-1/us-east-1a`, `*/*/g5.xlarge`, `us-east-1/spot/g` for a quota bucket).
    Unblock(UnblockArgs),
}

/// The deployment: its home stack's name (outputs `LedgerTableName`, `ControlQueueUrl`, `FleetName`), or the
/// settings themselves.
#[derive(Debug, Args)]
pub struct Deployment {
    /// The home stack, whose outputs give the settings not given otherwise.
    #[arg(long, env = "GAMEFORGE_STACK")]
    stack: Option<String>,
    #[arg(long, env = "GAMEFORGE_LEDGER_TABLE", hide_env_values = true)]
    ledger_table: Option<String>,
    #[arg(long, env = "GAMEFORGE_CONTROL_QUEUE_URL", hide_env_values = true)]
    control_queue_url: Option<String>,
    /// The fleet's name (default: the stack's `FleetName`, else `sdxl`, the template's default).
    #[arg(long, env = "GAMEFORGE_FLEET")]
    fleet: Option<String>,
}

/// The settings a command uses, once the stack (if any) filled in what was not given.
struct Resolved {
    ledger_table: String,
    control_queue_url: Option<String>,
    fleet: String,
}

impl Deployment {
    /// Every setting that is missing, in one message.
    async fn resolve(&self, config: &aws_config::SdkConfig, queue: bool) -> Result<Resolved, Failure> {
        let outputs = match &self.stack {
            Some(stack) => Some(crate::stack::outputs(config, stack).await?),
            None => None,
        };
        let outputs = outputs.as_ref();
        let ledger_table = crate::stack::setting(self.ledger_table.as_ref(), outputs, "LedgerTableName");
        let control_queue_url = crate::stack::setting(self.control_queue_url.as_ref(), outputs, "ControlQueueUrl");
        let fleet = crate::stack::setting(self.fleet.as_ref(), outputs, "FleetName").unwrap_or_else(|| "sdxl".into());
        let mut missing = Vec::new();
        if ledger_table.is_none() {
            missing.push("GAMEFORGE_LEDGER_TABLE (--ledger-table) is missing");
        }
        if queue && control_queue_url.is_none() {
            missing.push("GAMEFORGE_CONTROL_QUEUE_URL (--control-queue-url) is missing");
        }
        match ledger_table {
            Some(ledger_table) if missing.is_empty() => Ok(Resolved { ledger_table, control_queue_url, fleet }),
            _ => Err(Failure(exit::ERROR, format!("{} (or name the stack: --stack)", missing.join("; ")))),
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    deployment: Deployment,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// How many of the last decisions to show.
    #[arg(long, default_value_t = 3)]
    decisions: usize,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    deployment: Deployment,
    /// Print one JSON object per invocation, newest first.
    #[arg(long)]
    json: bool,
    /// How many invocations' decisions to show.
    #[arg(long, default_value_t = 20)]
    last: usize,
}

#[derive(Debug, Args)]
pub struct InstructionArgs {
    #[command(flatten)]
    deployment: Deployment,
    /// Who asks, for the journal (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Seconds to wait for the executor to apply it (0: send and return).
    #[arg(long, default_value_t = 90)]
    timeout: u64,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    instruction: InstructionArgs,
    /// Why, for the journal and for whoever looks at `status` next.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    instruction: InstructionArgs,
    /// One of the fleet's regions (not the global `--region`, which is where the deployment is).
    #[arg(value_name = "REGION")]
    target: String,
}

#[derive(Debug, Args)]
pub struct UnblockArgs {
    #[command(flatten)]
    instruction: InstructionArgs,
    pattern: String,
}

pub fn run(command: FleetCommand, caller: &Caller) -> ExitCode {
    crate::outcome::run(async { dispatch(command, caller).await.map(|()| 0) })
}

async fn dispatch(command: FleetCommand, caller: &Caller) -> Result<(), Failure> {
    let config = gameforge_aws::config::load_as(caller).await;
    let ledger = |table: &str| DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table);
    match command {
        FleetCommand::Status(args) => {
            let resolved = args.deployment.resolve(&config, false).await?;
            let ledger = ledger(&resolved.ledger_table);
            let fleet = &resolved.fleet;
            let (view, state) = ledger.load_ledger(fleet).await?;
            let decisions = ledger.recent_decisions(fleet, args.decisions).await?;
            let status = FleetStatus::new(fleet, &view, state.as_ref(), decisions, chrono::Utc::now());
            if args.json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                print!("{status}");
            }
            Ok(())
        }
        FleetCommand::Explain(args) => {
            let resolved = args.deployment.resolve(&config, false).await?;
            let decisions = ledger(&resolved.ledger_table).recent_decisions(&resolved.fleet, args.last).await?;
            if args.json {
                for d in &decisions {
                    println!("{}", serde_json::to_string(d)?);
                }
            } else if decisions.is_empty() {
                println!("no decisions kept for fleet {} (they are kept a week)", resolved.fleet);
            } else {
                let mut text = String::new();
                for d in &decisions {
                    write_decisions(&mut text, d, chrono::Utc::now())?;
                }
                print!("{text}");
            }
            Ok(())
        }
        FleetCommand::Pause(args) => {
            instruct(&config, &args.instruction, OperatorAction::Pause { reason: args.reason.clone() }).await
        }
        FleetCommand::Resume(args) => instruct(&config, &args, OperatorAction::Resume).await,
        FleetCommand::Pin(args) => {
            instruct(&config, &args.instruction, OperatorAction::Pin { region: args.target.clone() }).await
        }
        FleetCommand::Unpin(args) => instruct(&config, &args, OperatorAction::Unpin).await,
        FleetCommand::Unblock(args) => {
            instruct(&config, &args.instruction, OperatorAction::Unblock { pattern: args.pattern.clone() }).await
        }
    }
}

/// Sends the instruction and waits until the executor's kept decisions show it applied.
async fn instruct(
    config: &aws_config::SdkConfig,
    args: &InstructionArgs,
    action: OperatorAction,
) -> Result<(), Failure> {
    let resolved = args.deployment.resolve(config, true).await?;
    let by = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|by| !by.is_empty())
        .unwrap_or_else(|| "operator".into());
    let now = chrono::Utc::now();
    let job = ControlJob {
        version: CONTRACT_VERSION,
        control_id: format!("operator-{}-{:08x}", now.format("%Y%m%dT%H%M%S"), rand::rng().random::<u32>()),
        fleet: resolved.fleet.clone(),
        emitted_at: now,
        command: ControlCommand::Operate { by, action },
    };
    let queue = ControlQueue::new(aws_sdk_sqs::Client::new(config), resolved.control_queue_url.unwrap_or_default());
    queue.send(std::slice::from_ref(&job)).await?;
    if args.timeout == 0 {
        println!("sent {}; the executor applies it within a minute", job.control_id);
        return Ok(());
    }
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(config), &resolved.ledger_table);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let recent = ledger.recent_decisions(&job.fleet, 50).await?;
        if let Some(applied) = recent.iter().find(|d| d.control_id == job.control_id) {
            return report(applied);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure(
                exit::TIMED_OUT,
                format!(
                    "sent {}, not applied after {}s: is the executor running? `gameforge fleet explain` shows it once it is",
                    job.control_id, args.timeout
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The executor's answer to the instruction, and what it did because of it.
fn report(applied: &Decisions) -> Result<(), Failure> {
    let mut refused = None;
    for entry in &applied.entries {
        match &entry.event {
            Event::Job { .. } => {}
            Event::Operator { applied: false, outcome, .. } => refused = Some(outcome.clone()),
            event => println!("{}", event.describe()),
        }
    }
    match refused {
        Some(why) => Err(Failure(exit::REJECTED, why)),
        None => Ok(()),
    }
}
