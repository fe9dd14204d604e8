//! `gameforge jobs`: submit, wait, status, cancel, list, for people at a terminal and for scripts (`--json`);
//! straight to the queue and the status table, or through the deployment's submit URL (`--submit-url`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use gameforge_aws::config::Caller;
use gameforge_contract::{
    ErrorClass, GenerationJob, JobResult, JobState, JobStatus, JobStatusReport, Message, S3Uri, Scheduler,
};
use gameforge_jobs::{
    CancelOutcome, Client, ClientSettings, Defaults, JobFilter, ListError, SubmitError, Submitted, WaitError,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::Rng;

use crate::outcome::{Failure, exit};

/// SQS keeps a message at most 14 days: a later deadline could never be reached by a waiting job.
const MAX_DEADLINE_IN: i64 = 14 * 86_400;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Validate and enqueue a generation job (idempotent by --job-id).
    Submit(Box<SubmitArgs>),
    /// Wait for a job's result.
    Wait(WaitArgs),
    /// Where a job is: submitted, queued, running (where), succeeded, failed, rejected, cancelled.
    Status(IdArgs),
    /// Cancel a job: at once if no worker has started it, else at its next step.
    Cancel(IdArgs),
    /// Your own jobs, newest first (the status table's owner index; not offered through --submit-url).
    List(ListArgs),
}

/// The deployment to talk to: its home stack's name (its outputs `JobQueueUrl` and `JobsTableArn`), or both
/// settings; or its submit URL.
#[derive(Debug, Args)]
pub struct Deployment {
    /// Go through the deployment's submit URL (a function URL with IAM auth) instead of the queue and the table:
    /// requests are signed with SigV4 (service lambda, the URL's region) by your AWS credentials, which then need
    /// only the URL's invoke permission (SubmitCallerPolicy). `list` is not offered there, and `--out` still
    /// needs s3:GetObject on the image.
    #[arg(long, env = "GAMEFORGE_SUBMIT_URL", global = true, value_name = "URL")]
    submit_url: Option<String>,
    /// The home stack, whose outputs give the settings not given otherwise.
    #[arg(long, env = "GAMEFORGE_STACK", global = true)]
    stack: Option<String>,
    #[arg(long, env = "GAMEFORGE_JOB_QUEUE_URL", global = true, hide_env_values = true)]
    queue_url: Option<String>,
    /// The job status table's name or ARN.
    #[arg(long, env = "GAMEFORGE_JOBS_TABLE", global = true, hide_env_values = true)]
    jobs_table: Option<String>,
    /// Where the jobs the CPU tier could serve go, where the deployment has a CPU tier.
    #[arg(long, env = "GAMEFORGE_ANY_TIER_QUEUE_URL", global = true, hide_env_values = true)]
    any_tier_queue_url: Option<String>,
    /// The deployment's CPU tier (the fleet file's `cpu_tier`, JSON; the stack's `CpuTier` output), which decides
    /// which jobs go to the any-tier queue.
    #[arg(long, env = "GAMEFORGE_CPU_TIER", global = true, hide_env_values = true)]
    cpu_tier: Option<String>,
}

#[derive(Debug, Args)]
pub struct Output {
    /// Print JSON for scripts (a JobResult, a JobStatusReport, or the submission's outcome).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchedulerArg {
    Euler,
    EulerA,
    Ddim,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    deployment: Deployment,
    #[command(flatten)]
    output: Output,
    /// The job's id; submitting the same id again never makes a second job (default: a new random id).
    #[arg(long)]
    job_id: Option<String>,
    #[arg(long)]
    prompt: String,
    #[arg(long)]
    negative_prompt: Option<String>,
    #[arg(long, default_value_t = 1024)]
    width: u32,
    #[arg(long, default_value_t = 1024)]
    height: u32,
    #[arg(long, default_value_t = 30)]
    steps: u32,
    #[arg(long, default_value_t = 5.0)]
    guidance: f64,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_enum, default_value = "euler")]
    scheduler: SchedulerArg,
    /// The model the fleet serves; through --submit-url, the deployment's when left out.
    #[arg(long, env = "GAMEFORGE_MODEL")]
    model: Option<String>,
    /// Where the image goes (`s3://bucket/prefix`; the image is `<prefix>/<job id>.png`); through --submit-url,
    /// your own folder of the deployment's output prefix when left out (and it must be under that folder).
    #[arg(long, env = "GAMEFORGE_OUTPUT_PREFIX")]
    output_prefix: Option<String>,
    /// An SQS queue that also receives the result: one of the deployment's account, tagged
    /// `gameforge:reply-to=<deployment prefix>`.
    #[arg(long)]
    reply_to: Option<String>,
    /// Seconds after which the job is worthless and is not run; at most 14 days (1209600), the longest a job
    /// message can wait on a queue.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=MAX_DEADLINE_IN))]
    deadline_in: Option<u32>,
    /// A label echoed back in the result, `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Wait for the result.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    waiting: Waiting,
}

#[derive(Debug, Args)]
pub struct Waiting {
    /// Give up waiting after this many seconds (the job itself goes on).
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Download the image into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    deployment: Deployment,
    #[command(flatten)]
    output: Output,
    job_id: String,
    #[command(flatten)]
    waiting: Waiting,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    deployment: Deployment,
    #[command(flatten)]
    output: Output,
    job_id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Submitted,
    Queued,
    Running,
    Succeeded,
    Failed,
    Rejected,
    Cancelled,
}

impl From<StateArg> for JobState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Submitted => JobState::Submitted,
            StateArg::Queued => JobState::Queued,
            StateArg::Running => JobState::Running,
            StateArg::Succeeded => JobState::Succeeded,
            StateArg::Failed => JobState::Failed,
            StateArg::Rejected => JobState::Rejected,
            StateArg::Cancelled => JobState::Cancelled,
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    deployment: Deployment,
    /// Print one JobStatusReport per line.
    #[arg(long)]
    json: bool,
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// At most this many jobs, the newest.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

pub fn run(command: JobsCommand, caller: &Caller) -> ExitCode {
    crate::outcome::run(dispatch(command, caller))
}

async fn connect(deployment: &Deployment, caller: &Caller) -> Result<Client, Failure> {
    let config = gameforge_aws::config::load_as(caller).await;
    if let Some(url) = &deployment.submit_url {
        return Ok(Client::over_url(&config, url)?);
    }
    let outputs = match &deployment.stack {
        Some(stack) => Some(crate::stack::outputs(&config, stack).await?),
        None => None,
    };
    let settings = ClientSettings::from_lookup(|name| match name {
        "GAMEFORGE_JOB_QUEUE_URL" => {
            crate::stack::setting(deployment.queue_url.as_ref(), outputs.as_ref(), "JobQueueUrl")
        }
        "GAMEFORGE_JOBS_TABLE" => {
            crate::stack::setting(deployment.jobs_table.as_ref(), outputs.as_ref(), "JobsTableArn")
        }
        "GAMEFORGE_ANY_TIER_QUEUE_URL" => {
            crate::stack::setting(deployment.any_tier_queue_url.as_ref(), outputs.as_ref(), "AnyTierJobQueueUrl")
        }
        "GAMEFORGE_CPU_TIER" => crate::stack::setting(deployment.cpu_tier.as_ref(), outputs.as_ref(), "CpuTier"),
        _ => None,
    })?;
    Ok(Client::new(&config, &settings))
}

async fn dispatch(command: JobsCommand, caller: &Caller) -> Result<u8, Failure> {
    match command {
        JobsCommand::Submit(args) => submit(*args, caller).await,
        JobsCommand::Wait(args) => {
            let client = connect(&args.deployment, caller).await?;
            wait(&client, &args.job_id, &args.waiting, args.output.json).await
        }
        JobsCommand::Status(args) => {
            let client = connect(&args.deployment, caller).await?;
            let report = client
                .status(&args.job_id)
                .await?
                .ok_or_else(|| Failure(exit::ERROR, format!("job {} is unknown", args.job_id)))?;
            if args.output.json {
                println!("{}", report.to_json());
            } else {
                println!("{}", describe(&report));
            }
            Ok(0)
        }
        JobsCommand::List(args) => {
            let client = connect(&args.deployment, caller).await?;
            let filter = JobFilter { state: args.state.map(JobState::from), limit: usize::from(args.limit) };
            let reports = match client.list(&filter).await {
                Ok(reports) => reports,
                Err(e @ ListError::NotOverHttp) => return Err(Failure(exit::ERROR, e.to_string())),
                Err(ListError::Aws(e)) => return Err(e.into()),
            };
            for report in &reports {
                if args.json {
                    println!("{}", report.to_json());
                } else {
                    println!("{}", describe(report));
                }
            }
            if reports.is_empty() && !args.json {
                eprintln!("no jobs");
            }
            Ok(0)
        }
        JobsCommand::Cancel(args) => {
            let client = connect(&args.deployment, caller).await?;
            let (outcome, record) = match client.cancel(&args.job_id).await? {
                CancelOutcome::Cancelled(r) => ("cancelled", r),
                CancelOutcome::Requested(r) => ("requested", r),
                CancelOutcome::AlreadyFinal(r) => ("already_final", r),
                CancelOutcome::NotFound => return Err(Failure(exit::ERROR, format!("job {} is unknown", args.job_id))),
            };
            if args.output.json {
                let line = serde_json::json!({"job_id": args.job_id, "outcome": outcome, "state": record.state});
                println!("{line}");
            } else {
                match outcome {
                    "cancelled" => println!("job {} cancelled; no worker will run it", args.job_id),
                    "requested" => println!("job {} is running; its worker stops it at the next step", args.job_id),
                    _ => println!("job {} already ended: {}", args.job_id, record.state.as_str()),
                }
            }
            Ok(0)
        }
    }
}

/// The job, and which of its fields are left to the deployment (their values in the job are placeholders that
/// are never sent: the library leaves them out of the request).
fn build_job(args: &SubmitArgs) -> Result<(GenerationJob, Defaults), Failure> {
    let defaults = Defaults { model: args.model.is_none(), output: args.output_prefix.is_none() };
    let output = match &args.output_prefix {
        Some(prefix) => S3Uri::parse(prefix).map_err(|e| Failure(exit::REJECTED, format!("--output-prefix: {e}")))?,
        None => S3Uri::parse("s3://deployment-default").map_err(|e| Failure(exit::ERROR, e.to_string()))?,
    };
    let job_id = args.job_id.clone().unwrap_or_else(|| {
        format!("{}-{:08x}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), rand::rng().random::<u32>())
    });
    let mut job = GenerationJob::new(job_id, &args.prompt, args.model.as_deref().unwrap_or_default(), output);
    job.negative_prompt = args.negative_prompt.clone();
    (job.width, job.height, job.steps, job.guidance, job.seed) =
        (args.width, args.height, args.steps, args.guidance, args.seed);
    job.scheduler = match args.scheduler {
        SchedulerArg::Euler => Scheduler::Euler,
        SchedulerArg::EulerA => Scheduler::EulerA,
        SchedulerArg::Ddim => Scheduler::Ddim,
    };
    job.reply_to = args.reply_to.clone();
    job.deadline = args.deadline_in.map(|s| job.submitted_at + chrono::Duration::seconds(i64::from(s)));
    job.labels = args.labels.iter().cloned().collect();
    Ok((job, defaults))
}

async fn submit(args: SubmitArgs, caller: &Caller) -> Result<u8, Failure> {
    let (job, defaults) = build_job(&args)?;
    let client = connect(&args.deployment, caller).await?;
    let outcome = match client.submit_with_defaults(&job, defaults).await {
        Ok(outcome) => outcome,
        Err(e @ SubmitError::Invalid(_)) => {
            let list: Vec<String> = e.violations().iter().map(|v| format!("  {v}")).collect();
            return Err(Failure(exit::REJECTED, format!("invalid job:\n{}", list.join("\n"))));
        }
        Err(e @ (SubmitError::Conflict { .. } | SubmitError::ReplyTo(_))) => {
            return Err(Failure(exit::REJECTED, e.to_string()));
        }
        Err(SubmitError::Aws(e)) => return Err(e.into()),
    };
    let (name, state) = match &outcome {
        Submitted::New => ("new", JobState::Queued),
        Submitted::Existing(record) => ("existing", record.state),
    };
    if !args.wait {
        if args.output.json {
            println!("{}", serde_json::json!({"job_id": job.job_id, "outcome": name, "state": state}));
        } else if name == "new" {
            println!("submitted job {}", job.job_id);
        } else {
            println!("job {} was submitted before; it is {}", job.job_id, state.as_str());
        }
        return Ok(0);
    }
    if !args.output.json {
        eprintln!("{} job {}", if name == "new" { "submitted" } else { "resumed" }, job.job_id);
    }
    wait(&client, &job.job_id, &args.waiting, args.output.json).await
}

async fn wait(client: &Client, job_id: &str, waiting: &Waiting, json: bool) -> Result<u8, Failure> {
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} steps {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let on_update = |report: &JobStatusReport| match &bar {
        Some(bar) => {
            if let Some(p) = report.progress {
                bar.set_length(u64::from(p.total));
                bar.set_position(u64::from(p.step));
            }
            bar.set_message(describe(report));
        }
        None if !json => eprintln!("{}", describe(report)),
        None => {}
    };
    let waited = client.wait(job_id, Duration::from_secs(waiting.timeout), on_update).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let result = match waited {
        Ok(result) => result,
        Err(WaitError::TimedOut { last, waited }) => {
            if json {
                println!("{}", last.to_json());
            }
            return Err(Failure(
                exit::TIMED_OUT,
                format!("no result after {}s; job {job_id} is {} (it goes on)", waited.as_secs(), last.state.as_str()),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut file = None;
    if let (Some(dir), Some(image)) = (&waiting.out, &result.image) {
        file = Some(client.download(image, dir).await?);
    }
    if json {
        println!("{}", result.to_json());
    } else {
        println!("{}", summarize(&result, file.as_deref()));
    }
    Ok(code(&result))
}

fn code(result: &JobResult) -> u8 {
    match (result.status, result.error.as_ref().map(|e| e.class)) {
        (JobStatus::Succeeded, _) => 0,
        (JobStatus::Rejected, _) => exit::REJECTED,
        (JobStatus::Failed, Some(ErrorClass::Cancelled)) => exit::CANCELLED,
        (JobStatus::Failed, _) => exit::FAILED,
    }
}

fn describe(report: &JobStatusReport) -> String {
    let mut text = format!("{}: {}", report.job_id, report.state.as_str());
    if let Some(p) = &report.placement {
        text.push_str(&format!(
            " on {} {} ({}) in {}",
            p.instance_type,
            p.instance_id,
            wire_name(p.capacity_type),
            p.availability_zone
        ));
    }
    if let Some(p) = report.progress {
        text.push_str(&format!(", step {}/{}", p.step, p.total));
    }
    if report.cancel_requested {
        text.push_str(", cancellation requested");
    }
    if let (Some(why), None) = (&report.gpu_only, &report.placement) {
        text.push_str(&format!(" — waiting for a GPU: {why}"));
    }
    if let Some(result) = &report.result {
        text.push_str(&format!(" — {}", summarize(result, None)));
    }
    text
}

fn summarize(result: &JobResult, file: Option<&std::path::Path>) -> String {
    match (&result.image, &result.error) {
        (Some(image), _) => {
            let seconds = result.timings.generation_ms.map(|ms| format!(" in {:.1}s", ms as f64 / 1000.0));
            let saved = file.map(|f| format!(", saved to {}", f.display())).unwrap_or_default();
            format!("{} succeeded{}: {image}{saved}", result.job_id, seconds.unwrap_or_default())
        }
        (None, Some(error)) => {
            format!("{} {} ({}): {}", result.job_id, wire_name(result.status), wire_name(error.class), error.message)
        }
        (None, None) => format!("{} ended without an image", result.job_id),
    }
}

/// A contract enum's name as the JSON says it (`on_demand`, `cancelled`).
fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_job_only_a_gpu_may_serve_says_why_it_waits() {
        let why = "2.62 megapixel-evaluations is more than the CPU tier's budget of 2.20";
        let report = JobStatusReport {
            version: 1,
            job_id: "poster".into(),
            state: gameforge_contract::JobState::Queued,
            submitted_at: None,
            updated_at: chrono::Utc::now(),
            placement: None,
            progress: None,
            cancel_requested: false,
            gpu_only: Some(why.into()),
            result: None,
        };
        assert_eq!(describe(&report), format!("poster: queued — waiting for a GPU: {why}"));
    }
}
