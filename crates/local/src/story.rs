//! The scripted story: jobs arrive while g5.xlarge and g4dn.xlarge capacity is gone from every us-east-1 zone;
//! the executor walks the ladder and moves the fleet to us-west-2; a spot interruption hits the worker running
//! the longest job; capacity comes back and the fleet returns home; every job completes. Only AWS's part is
//! scripted (capacity at the API, the interruption, CloudTrail's and EC2's events); every decision is the
//! system's own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use gameforge_capacity::{CapacityModel, regional_shortage};
use gameforge_contract::{GenerationJob, JobState, S3Uri};
use gameforge_planner::Span;
use serde_json::json;
use tokio::time::Instant;

use crate::chart::{MarkerKind, RunOutcome};
use crate::system::{HOME, Options, STANDBY, System, publish};
use crate::timeline::Timeline;

/// The model id the deployed workers serve (the template's `ModelId` default).
pub const MODEL_ID: &str = "sdxl-base";
const SHORT_TYPES: &[&str] = &["g5.xlarge", "g4dn.xlarge"];
/// The long job (it cannot finish within a spot notice on the tiny model here) and the others.
const POSTER_STEPS: u32 = 100;
const ITEM_STEPS: u32 = 8;
/// How often the game submits a job while the fleet is away from home.
const TRICKLE: Duration = Duration::from_secs(3);

/// How the story compresses AWS's clock: a spot notice of two minutes is this long here.
pub const SPOT_NOTICE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct StoryOptions {
    pub out: PathBuf,
    /// Jobs in the first wave (the longest first), the second (when capacity is back; then one every few
    /// seconds until the fleet is home) and the third (when the fleet is home).
    pub first_wave: u32,
    pub second_wave: u32,
    pub third_wave: u32,
    /// Gives up on a step that does not happen within this long.
    pub step_timeout: Duration,
}

/// The system as the story and the reliability run play it. The workers run with their task definition's
/// environment and their own defaults (20 s long polls, 60 s visibility, the SDK's timeouts): only what AWS
/// takes long to do is compressed (the fleet file's minutes, a spot notice's two minutes, the reconcile schedule).
pub fn system_options() -> Options {
    Options { signal_path_only: false, reconcile_every: Duration::from_secs(3), cpu_tier: None }
}

fn job(system: &System, id: &str, prompt: &str, steps: u32) -> anyhow::Result<GenerationJob> {
    let output = S3Uri::parse(&format!("s3://{}/story/", system.deployment.output_bucket))?;
    let mut job = GenerationJob::new(id, prompt, MODEL_ID, output);
    job.width = 64;
    job.height = 64;
    job.steps = steps;
    job.seed = Some(7);
    Ok(job)
}

const PROMPTS: &[&str] = &[
    "a knight's helmet, game item icon",
    "a glowing mana potion, game item icon",
    "a treasure chest on a stone floor",
    "a pixel-art dragon egg",
    "an elven bow with runes",
    "a healing herb bundle",
    "a cracked crystal shard",
    "an iron shield with a lion crest",
    "a scroll of fireball",
    "a ruby ring, game item icon",
];

/// Polls `check` until it answers `Some`, or fails with `what` after the timeout.
pub(crate) async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("the story stopped: {what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `n` ordinary jobs, numbered from `from`.
fn wave(system: &System, from: u32, n: u32) -> anyhow::Result<Vec<GenerationJob>> {
    (from..from + n)
        .map(|i| job(system, &format!("item-{i:02}"), PROMPTS[i as usize % PROMPTS.len()], ITEM_STEPS))
        .collect()
}

async fn submit(system: &System, jobs: &[GenerationJob]) -> anyhow::Result<()> {
    for job in jobs {
        system.client.submit(job).await.with_context(|| format!("submitting {}", job.job_id))?;
    }
    Ok(())
}

pub async fn run(options: &StoryOptions) -> anyhow::Result<()> {
    let timeline = Timeline::new();
    let system = System::start(&system_options(), timeline.clone()).await?;
    let outcome = play(&system, options).await;
    let title = "gameforge local story: capacity shortage, migration, spot interruption, return home";
    let written = write_outputs(&system, &timeline, &options.out, title, outcome.as_ref().ok()).await;
    let denied = system.take_iam_denials();
    system.shutdown().await;
    let summary = outcome?;
    written?;
    if !denied.is_empty() {
        bail!("IAM would have denied {} call(s) of the deployed principals:\n  {}", denied.len(), denied.join("\n  "));
    }
    println!("\n{summary}");
    println!("timeline, chart and images in {}", options.out.display());
    Ok(())
}

/// What the story saw, checked.
#[derive(Debug, Clone)]
pub struct Summary {
    pub jobs: BTreeMap<String, (JobState, Option<String>)>,
    pub runs_by_job: BTreeMap<String, Vec<(String, RunOutcome)>>,
    pub duration: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let succeeded = self.jobs.values().filter(|(s, _)| *s == JobState::Succeeded).count();
        writeln!(
            f,
            "story complete in {:.0} s: {succeeded}/{} jobs succeeded",
            self.duration.as_secs_f64(),
            self.jobs.len()
        )?;
        for (id, (state, region)) in &self.jobs {
            let runs = self.runs_by_job.get(id).map(Vec::as_slice).unwrap_or_default();
            let runs: Vec<String> = runs.iter().map(|(instance, outcome)| format!("{instance} {outcome:?}")).collect();
            writeln!(
                f,
                "  {id:<12} {:<10} in {:<10} runs: {}",
                state.as_str(),
                region.as_deref().unwrap_or("-"),
                runs.join(", ")
            )?;
        }
        Ok(())
    }
}

async fn play(system: &System, options: &StoryOptions) -> anyhow::Result<Summary> {
    let t = &system.timeline;
    let started = Instant::now();
    let step = options.step_timeout;

    // 1. AWS runs out of GPUs in us-east-1.
    system.emulator.faults().set_capacity(CapacityModel::new(
        SHORT_TYPES.iter().flat_map(|ty| regional_shortage(HOME.0, &[ty], Span::ZERO, None)).collect(),
    ));
    t.marker(MarkerKind::ShortageStarts, format!("no g5/g4dn in {}", HOME.0));
    t.line(
        "story",
        format!("AWS has no g5.xlarge or g4dn.xlarge capacity left in any {} zone, spot or on-demand", HOME.0),
    );

    // 2. The game backend submits the first wave; the first job is a long one.
    let mut first = vec![job(system, "poster-01", "a castle at dawn, key art", POSTER_STEPS)?];
    for i in 1..options.first_wave {
        first.push(job(system, &format!("item-{i:02}"), PROMPTS[i as usize % PROMPTS.len()], ITEM_STEPS)?);
    }
    submit(system, &first).await?;
    t.marker(MarkerKind::Submitted, format!("{} jobs", first.len()));
    t.line("story", format!("the game backend submits {} jobs (poster-01 is long: {POSTER_STEPS} steps)", first.len()));

    // 3. The system finds its way to us-west-2 on its own.
    until(step, "a worker serving in us-west-2", || async {
        Ok(system.hosts.running().await.into_iter().find(|(_, region)| region == STANDBY.0))
    })
    .await?;

    // 4. A spot interruption hits the worker running the long job, in the middle of it.
    let (victim, step_at) = until(step, "poster-01 running", || async {
        let status = system.client.status("poster-01").await?;
        Ok(status.and_then(|s| match (s.state, s.placement, s.progress) {
            (JobState::Running, Some(p), Some(progress)) if progress.step >= 1 => Some((p.instance_id, progress.step)),
            _ => None,
        }))
    })
    .await?;
    let info = system.hosts.info(&victim).await.context("the victim's host")?;
    let deadline = chrono::Utc::now() + chrono::Duration::from_std(SPOT_NOTICE)?;
    system.hosts.interrupt(&victim, deadline).await;
    publish(
        &system.config,
        &info.region,
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
        &json!({"instance-id": victim, "instance-action": "terminate"}),
        &[format!("arn:aws:ec2:{}:123456789012:instance/{victim}", info.region)],
    )
    .await?;
    t.marker(MarkerKind::Interruption, format!("spot notice {victim}"));
    t.line(
        "story",
        format!(
            "AWS: spot interruption notice for {victim} ({}) while poster-01 is at step {step_at}/{POSTER_STEPS}; it goes in {} s (AWS: 2 min)",
            info.zone,
            SPOT_NOTICE.as_secs()
        ),
    );
    let config = system.config.clone();
    let (region, instance) = (info.region.clone(), victim.clone());
    let reclaim = tokio::spawn(async move {
        tokio::time::sleep(SPOT_NOTICE).await;
        let ec2 =
            aws_sdk_ec2::Client::new(&config.to_builder().region(aws_config::Region::new(region.clone())).build());
        ec2.terminate_instances().instance_ids(&instance).send().await.context("TerminateInstances")?;
        publish(
            &config,
            &region,
            "aws.ec2",
            "EC2 Instance State-change Notification",
            &json!({"instance-id": instance, "state": "shutting-down"}),
            &[format!("arn:aws:ec2:{region}:123456789012:instance/{instance}")],
        )
        .await
    });

    // 5. The long job finishes elsewhere.
    until(step, "poster-01 running again on another instance", || async {
        let status = system.client.status("poster-01").await?;
        Ok(status.and_then(|s| s.placement).filter(|p| p.instance_id != victim).map(|_| ()))
    })
    .await?;
    reclaim.await.context("the reclaim task")??;
    t.line("story", format!("AWS reclaimed {victim}"));

    // 6. Capacity comes back home, more jobs arrive, and the fleet goes home when its hysteresis allows.
    system.emulator.faults().set_capacity(CapacityModel::default());
    t.marker(MarkerKind::ShortageEnds, format!("capacity back in {}", HOME.0));
    t.line("story", format!("AWS has g5.xlarge and g4dn.xlarge capacity in {} again", HOME.0));
    let mut second = wave(system, options.first_wave, options.second_wave)?;
    submit(system, &second).await?;
    t.marker(MarkerKind::Submitted, format!("{} jobs", second.len()));
    t.line(
        "story",
        format!("the game backend submits {} more jobs, then one every {} s", second.len(), TRICKLE.as_secs()),
    );
    // The game keeps asking while the fleet is away: the way home is taken under demand, whatever this machine's
    // speed (an idle fleet would scale to zero where it is instead).
    let deadline = Instant::now() + step * 2;
    let mut next = Instant::now() + TRICKLE;
    loop {
        let running = system.hosts.running().await;
        if running.iter().any(|(_, r)| r == HOME.0) && !running.iter().any(|(_, r)| r == STANDBY.0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the story stopped: the fleet back in {} did not happen within {:?}", HOME.0, step * 2);
        }
        if Instant::now() >= next {
            let more = wave(system, options.first_wave + second.len() as u32, 1)?;
            submit(system, &more).await?;
            second.extend(more);
            next = Instant::now() + TRICKLE;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    t.line("story", format!("the fleet is home; {} jobs arrived while it came back", second.len()));

    // 7. Jobs that arrive now run at home.
    let third = wave(system, options.first_wave + second.len() as u32, options.third_wave)?;
    submit(system, &third).await?;
    t.marker(MarkerKind::Submitted, format!("{} jobs", third.len()));
    t.line("story", format!("the game backend submits {} more jobs, with the fleet back home", third.len()));

    // 8. Every job completes.
    let ids: Vec<String> = first.iter().chain(&second).chain(&third).map(|j| j.job_id.clone()).collect();
    let jobs = until(step * 2, "every job final", || async {
        let mut states = BTreeMap::new();
        for id in &ids {
            let Some(status) = system.client.status(id).await? else { return Ok(None) };
            if !status.state.is_final() {
                return Ok(None);
            }
            states.insert(id.clone(), (status.state, status.placement.map(|p| p.region)));
        }
        Ok(Some(states))
    })
    .await?;
    t.marker(MarkerKind::AllDone, "every job final");
    t.line("story", "every job is final");
    let away: Vec<&String> =
        third.iter().map(|j| &j.job_id).filter(|id| jobs[*id].1.as_deref() != Some(HOME.0)).collect();
    if !away.is_empty() {
        bail!("jobs submitted after the fleet came home ran elsewhere: {away:?}");
    }

    // 9. Idle, the fleet goes to zero.
    let zero =
        until(step, "the fleet at zero", || async { Ok(system.hosts.running().await.is_empty().then_some(())) }).await;
    match zero {
        Ok(()) => t.line("story", "the fleet is idle and scaled to zero"),
        Err(error) => t.line("story", format!("{error:#}")),
    }

    let mut runs_by_job: BTreeMap<String, Vec<(String, RunOutcome)>> = BTreeMap::new();
    for lane in t.chart("").lanes {
        for bar in lane.jobs {
            runs_by_job.entry(bar.job_id).or_default().push((lane.instance_id.clone(), bar.outcome));
        }
    }
    let summary = Summary { jobs, runs_by_job, duration: started.elapsed() };
    summary.check()?;
    Ok(summary)
}

impl Summary {
    /// Every job succeeded, and none was generated to completion twice.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let failed: Vec<&String> =
            self.jobs.iter().filter(|(_, (s, _))| *s != JobState::Succeeded).map(|(id, _)| id).collect();
        if !failed.is_empty() {
            bail!("jobs that did not succeed: {failed:?}\n{self}");
        }
        let twice: Vec<&String> = self
            .runs_by_job
            .iter()
            .filter(|(_, runs)| runs.iter().filter(|(_, o)| *o == RunOutcome::Succeeded).count() > 1)
            .map(|(id, _)| id)
            .collect();
        if !twice.is_empty() {
            bail!("jobs generated to completion more than once: {twice:?}\n{self}");
        }
        Ok(())
    }
}

/// `out/timeline.txt`, `out/timeline.svg`, `out/timeline.html`, `out/summary.json` and the images.
pub(crate) async fn write_outputs(
    system: &System,
    timeline: &Timeline,
    out: &Path,
    title: &str,
    summary: Option<&Summary>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("images")).with_context(|| format!("creating {}", out.display()))?;
    let chart = timeline.chart(title);
    let lines = timeline.lines();
    write(out, "timeline.txt", &(lines.join("\n") + "\n"))?;
    write(out, "timeline.svg", &crate::chart::svg(&chart))?;
    write(out, "timeline.html", &crate::chart::html(&chart, &lines))?;
    write(out, "chart.json", &serde_json::to_string_pretty(&chart)?)?;
    let mut images = 0;
    if let Some(summary) = summary {
        for id in summary.jobs.keys() {
            let Some(result) = system.client.status(id).await?.and_then(|s| s.result) else { continue };
            if let Some(image) = &result.image {
                system
                    .client
                    .download(image, &out.join("images"))
                    .await
                    .with_context(|| format!("downloading {image}"))?;
                images += 1;
            }
        }
        write(out, "summary.txt", &summary.to_string())?;
    }
    timeline.line("story", format!("wrote the timeline, the chart and {images} image(s) to {}", out.display()));
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
