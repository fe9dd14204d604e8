//! The CPU tier's story: no GPU left anywhere. The stacks run a CPU tier (`crates/local/cpu-tier.json`); every
//! g5.xlarge and g4dn.xlarge launch fails in every region; the game submits small jobs the tier admits and larger
//! ones only a GPU may serve. The tier comes on and serves the small ones on Fargate while the larger ones wait;
//! GPU capacity returns, GPU workers serve the rest, and the tier is drained. Only AWS's part is scripted.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use gameforge_capacity::{CapacityModel, regional_shortage};
use gameforge_contract::{GenerationJob, JobState, S3Uri, Tier};
use gameforge_planner::Span;
use gameforge_planner::cpu_tier::{Route, route};
use tokio::time::Instant;

use crate::chart::{MarkerKind, RunOutcome};
use crate::story::{MODEL_ID, Summary, system_options, until, write_outputs};
use crate::system::{HOME, STANDBY, System};
use crate::timeline::Timeline;

/// The tier the stacks are given: the fleet file's minutes compressed to seconds, as the local fleet's are.
const CPU_TIER: &str = include_str!("../cpu-tier.json");
const SHORT_TYPES: &[&str] = &["g5.xlarge", "g4dn.xlarge"];

#[derive(Debug, Clone)]
pub struct ShortageOptions {
    pub out: std::path::PathBuf,
    /// Jobs the tier may serve, and jobs only a GPU may.
    pub small: u32,
    pub large: u32,
    /// Gives up on a step that does not happen within this long.
    pub step_timeout: std::time::Duration,
}

pub async fn run(options: &ShortageOptions) -> anyhow::Result<()> {
    let timeline = Timeline::new();
    let tier: serde_json::Value = serde_json::from_str(CPU_TIER).context("crates/local/cpu-tier.json")?;
    let system_options = crate::system::Options { cpu_tier: Some(tier.to_string()), ..system_options() };
    let system = System::start(&system_options, timeline.clone()).await?;
    let outcome = play(&system, options).await;
    let title = "gameforge local story: no GPU anywhere, the CPU tier serves the small jobs, GPUs return";
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

/// A game item icon the tier admits (`small`), or a 96² scene, over the budget of the tier here (whose budget
/// is scaled to the tiny model, as its spans are to the story's clock).
fn job(system: &System, id: &str, small: bool) -> anyhow::Result<GenerationJob> {
    let output = S3Uri::parse(&format!("s3://{}/shortage/", system.deployment.output_bucket))?;
    let prompt = if small { "a glowing mana potion, game item icon" } else { "a mountain fortress at dusk, scene" };
    let mut job = GenerationJob::new(id, prompt, MODEL_ID, output);
    (job.width, job.height, job.steps) = if small { (64, 64, 8) } else { (96, 96, 8) };
    job.seed = Some(7);
    Ok(job)
}

async fn play(system: &System, options: &ShortageOptions) -> anyhow::Result<Summary> {
    let t = &system.timeline;
    let started = Instant::now();
    let step = options.step_timeout;
    let cpu = system.cpu_service.as_ref().context("the system runs no CPU tier")?;

    // 1. No g5 or g4dn left in any region, spot or on-demand.
    let regions = [HOME.0, STANDBY.0];
    system.emulator.faults().set_capacity(CapacityModel::new(
        regions
            .iter()
            .flat_map(|region| SHORT_TYPES.iter().flat_map(|ty| regional_shortage(region, &[ty], Span::ZERO, None)))
            .collect(),
    ));
    t.marker(MarkerKind::ShortageStarts, "no GPU anywhere");
    t.line("story", "AWS has no g5.xlarge or g4dn.xlarge capacity left in any zone of any region, spot or on-demand");

    // 2. Small jobs the tier admits, and larger ones only a GPU may serve.
    let tier = gameforge_planner::cpu_tier::CpuTier::from_json(CPU_TIER)?;
    let small: Vec<GenerationJob> =
        (1..=options.small.max(1)).map(|i| job(system, &format!("icon-{i:02}"), true)).collect::<Result<_, _>>()?;
    let large: Vec<GenerationJob> =
        (1..=options.large.max(1)).map(|i| job(system, &format!("scene-{i:02}"), false)).collect::<Result<_, _>>()?;
    for job in small.iter().chain(&large) {
        system.client.submit(job).await.with_context(|| format!("submitting {}", job.job_id))?;
    }
    let reason = match route(Some(&tier), &large[0], chrono::Utc::now()) {
        Route::GpuOnly(reason) => reason.to_string(),
        Route::AnyTier => bail!("the scenes were meant to be over the tier's budget"),
    };
    t.marker(MarkerKind::Submitted, format!("{} small, {} large", small.len(), large.len()));
    t.line(
        "story",
        format!(
            "the game backend submits {} icons (64², 8 steps: the CPU tier may serve them) and {} scenes (GPU only: {reason})",
            small.len(),
            large.len()
        ),
    );

    // 3. The executor finds no GPU anywhere and brings the tier on; the icons are served on Fargate.
    until(step, "a CPU tier task running", || async { Ok(cpu.running().await.first().cloned()) }).await?;
    let served = until(step * 2, "every icon served", || async { final_states(system, &small).await }).await?;
    let on_gpu: Vec<&String> =
        served.iter().filter(|(_, (_, tier))| *tier != Some(Tier::Cpu)).map(|(id, _)| id).collect();
    if !on_gpu.is_empty() {
        bail!("icons served while no GPU could be had, yet not by the CPU tier: {on_gpu:?}");
    }
    for job in &large {
        let status = system.client.status(&job.job_id).await?.context("a scene's status")?;
        if status.state.is_final() {
            bail!("{} is GPU only, yet it ended ({}) while no GPU could be had", job.job_id, status.state.as_str());
        }
        let why = status.gpu_only.with_context(|| format!("{}'s status says nothing of why it waits", job.job_id))?;
        t.line("story", format!("{} is {}: waiting for a GPU ({why})", job.job_id, status.state.as_str()));
    }
    t.line("story", "the CPU tier served every icon; the scenes wait for a GPU");

    // 4. GPU capacity returns: GPU workers serve the scenes, and the tier is drained.
    system.emulator.faults().set_capacity(CapacityModel::default());
    t.marker(MarkerKind::ShortageEnds, "GPU capacity back");
    t.line("story", "AWS has g5.xlarge and g4dn.xlarge capacity again");
    let scenes = until(step * 2, "every scene served", || async { final_states(system, &large).await }).await?;
    let off_gpu: Vec<&String> =
        scenes.iter().filter(|(_, (_, tier))| *tier != Some(Tier::Gpu)).map(|(id, _)| id).collect();
    if !off_gpu.is_empty() {
        bail!("GPU-only jobs served by something else: {off_gpu:?}");
    }
    t.marker(MarkerKind::AllDone, "every job final");
    until(step, "the CPU tier drained", || async { Ok(cpu.running().await.is_empty().then_some(())) }).await?;
    t.line("story", "GPU workers served the scenes, and the CPU tier is drained to zero");

    // The chart is drawn from the workers' logs, which may trail the status store by a moment.
    let ids: Vec<&str> = small.iter().chain(&large).map(|j| j.job_id.as_str()).collect();
    until(step, "every job's run in the timeline", || async {
        let lanes = t.chart("").lanes;
        let logged =
            |id: &str| lanes.iter().flat_map(|l| &l.jobs).any(|b| b.job_id == id && b.outcome == RunOutcome::Succeeded);
        Ok(ids.iter().all(|id| logged(id)).then_some(()))
    })
    .await?;
    let mut runs_by_job: BTreeMap<String, Vec<(String, RunOutcome)>> = BTreeMap::new();
    for lane in t.chart("").lanes {
        for bar in lane.jobs {
            runs_by_job.entry(bar.job_id).or_default().push((lane.instance_id.clone(), bar.outcome));
        }
    }
    let jobs = served.into_iter().chain(scenes).map(|(id, (state, _))| (id, (state, None))).collect();
    let summary = Summary { jobs, runs_by_job, duration: started.elapsed() };
    summary.check()?;
    Ok(summary)
}

/// Each job's final state and the tier that answered it, once all of `jobs` are final.
async fn final_states(
    system: &System,
    jobs: &[GenerationJob],
) -> anyhow::Result<Option<BTreeMap<String, (JobState, Option<Tier>)>>> {
    let mut states = BTreeMap::new();
    for job in jobs {
        let Some(status) = system.client.status(&job.job_id).await? else { return Ok(None) };
        if !status.state.is_final() {
            return Ok(None);
        }
        states.insert(job.job_id.clone(), (status.state, status.result.and_then(|r| r.tier)));
    }
    Ok(Some(states))
}
