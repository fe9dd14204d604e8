//! `sdxl-worker generate`.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, bail};
use candle_core::{DType, Device};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use sdxl_worker::image::RgbImage;
use sdxl_worker::source::{Hub, ModelLocation, S3, default_cache, default_hub_cache, fetch, fetch_hub};
use sdxl_worker::{GenerateRequest, LoadOptions, SchedulerKind, SdxlPipeline, VaeTiling};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SchedulerArg {
    Euler,
    #[value(name = "euler_a")]
    EulerA,
    Ddim,
}

impl From<SchedulerArg> for SchedulerKind {
    fn from(s: SchedulerArg) -> Self {
        match s {
            SchedulerArg::Euler => SchedulerKind::Euler,
            SchedulerArg::EulerA => SchedulerKind::EulerAncestral,
            SchedulerArg::Ddim => SchedulerKind::Ddim,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F16 => DType::F16,
            DTypeArg::Bf16 => DType::BF16,
        }
    }
}

/// The GPU when there is one (unless `cpu`), and the precision asked for or suited to the device: f16 on a
/// GPU, f32 on the CPU.
pub fn device_and_dtype(cpu: bool, dtype: Option<DTypeArg>) -> anyhow::Result<(Device, DType)> {
    let device = if cpu { Device::Cpu } else { Device::cuda_if_available(0)? };
    let dtype = match dtype {
        Some(d) => d.into(),
        None if device.is_cpu() => DType::F32,
        None => DType::F16,
    };
    Ok((device, dtype))
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A diffusers-format SDXL folder, `s3://bucket/prefix`, or a Hugging Face Hub repo (`owner/name`,
    /// `hf://owner/name@revision`); remote models are copied into a cache first (a Hub repo into the Hub's:
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE=1` uses it alone).
    #[arg(long)]
    model: String,
    /// Where S3 models are cached (default: `GAMEFORGE_MODEL_CACHE`, else `~/.cache/gameforge/models`); a Hub
    /// repo goes into the Hub's cache.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[arg(long)]
    prompt: String,
    /// Without it, guidance uses zeros where the model asks for that (`force_zeros_for_empty_prompt`).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Defaults to the model's native size.
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    height: Option<usize>,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Classifier-free guidance scale; 1 or less turns it off (SDXL-Turbo: 0 with 1–4 steps).
    #[arg(long, default_value_t = 5.0)]
    guidance: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Defaults to the scheduler the model folder names.
    #[arg(long, value_enum)]
    scheduler: Option<SchedulerArg>,
    /// A safetensors file with a tensor named `latents`: the initial noise, before the scheduler's scaling.
    #[arg(long)]
    latents: Option<PathBuf>,
    /// Defaults to f16 on a GPU and f32 on the CPU.
    #[arg(long, value_enum)]
    dtype: Option<DTypeArg>,
    /// Decode the image in overlapping tiles (of PIXELS, default the VAE's own size: 1024 for SDXL) to save
    /// memory on large images.
    #[arg(long, value_name = "PIXELS", num_args = 0..=1, default_missing_value = "0")]
    vae_tiling: Option<usize>,
    /// At most this much memory for a job's activations (`16GiB`, `512MiB`); the device's free memory (GPU) or
    /// available memory and `ulimit -v` (CPU) always bound it too. Attention is sliced and the VAE tiled to fit.
    #[arg(long, env = "GAMEFORGE_MEMORY_BUDGET", value_parser = memory_size)]
    memory_budget: Option<u64>,
    /// Run on the CPU even when a GPU is present.
    #[arg(long)]
    cpu: bool,
    #[arg(long)]
    out: PathBuf,
}

/// Parses a `--memory-budget` value.
pub fn memory_size(text: &str) -> Result<u64, String> {
    sdxl_worker::memory::budget::parse_size(text)
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// `s3://bucket/prefix` or a Hub repo (`owner/name`, `hf://owner/name@revision`).
    #[arg(long)]
    model: String,
    /// Where S3 models are cached (default: `GAMEFORGE_MODEL_CACHE`, else `~/.cache/gameforge/models`); a Hub
    /// repo goes into the Hub's cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The precision the model will run in, which decides the weight variant fetched.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: DTypeArg,
}

pub fn fetch_command(args: FetchArgs) -> anyhow::Result<()> {
    let folder = resolve(&args.model, args.cache_dir, args.dtype.into())?;
    println!("{}", folder.display());
    Ok(())
}

/// The local folder of a model argument, downloading a remote one into its cache first (`cache` is the S3 one).
pub fn resolve(model: &str, cache: Option<PathBuf>, dtype: DType) -> anyhow::Result<PathBuf> {
    let location = ModelLocation::parse(model)?;
    if let ModelLocation::Local(path) = location {
        return Ok(path);
    }
    let cache = cache.unwrap_or_else(default_cache);
    let variant = matches!(dtype, DType::F16 | DType::BF16).then_some("fp16");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let folder = runtime.block_on(async {
        match location {
            ModelLocation::S3 { bucket, prefix } => {
                let config = gameforge_aws::config::load().await;
                // Path-style addressing works against AWS and against endpoints without bucket subdomains.
                let client = gameforge_jobs::clients::s3(&config);
                fetch(&S3::new(client, bucket, prefix), &cache, variant).await
            }
            // The Hub's own cache, shared with its tools: what they downloaded is used in place.
            ModelLocation::Hub { repo, revision } => {
                fetch_hub(&Hub::from_env(repo, revision)?, &default_hub_cache(), variant).await
            }
            ModelLocation::Local(_) => unreachable!("handled above"),
        }
    })?;
    Ok(folder)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (device, dtype) = device_and_dtype(args.cpu, args.dtype)?;
    let root = resolve(&args.model, args.cache_dir.clone(), dtype)?;
    let vae_tiling = match args.vae_tiling {
        None => VaeTiling::Off,
        Some(0) => VaeTiling::ModelDefault,
        Some(p) => VaeTiling::Pixels(p),
    };
    let options = LoadOptions { device: device.clone(), dtype, vae_tiling, memory_budget: args.memory_budget };
    let pipeline = SdxlPipeline::load(&root, options).with_context(|| format!("loading {}", args.model))?;
    let latents = match &args.latents {
        None => None,
        Some(path) => {
            let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)
                .with_context(|| format!("reading {}", path.display()))?;
            match tensors.remove("latents") {
                Some(t) => Some(t),
                None => bail!("{} has no tensor named `latents`", path.display()),
            }
        }
    };
    let size = pipeline.default_size();
    let request = GenerateRequest {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        width: args.width.unwrap_or(size),
        height: args.height.unwrap_or(size),
        steps: args.steps,
        guidance: args.guidance,
        seed: args.seed,
        scheduler: args.scheduler.map(Into::into),
        latents,
    };
    let bar = ProgressBar::new(request.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {elapsed} ({per_sec})")
            .expect("the progress template is valid")
            .progress_chars("=> "),
    );
    let generated = pipeline.generate(&request, &mut |p| {
        bar.set_position(p.step as u64);
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    if generated.dropped_tokens > 0 {
        eprintln!(
            "warning: the prompt is longer than 77 tokens; the last {} tokens were dropped, as the reference does",
            generated.dropped_tokens
        );
    }
    let image = RgbImage::from_tensor(&generated.image)?;
    let parameters = serde_json::json!({
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": request.width,
        "height": request.height,
        "steps": request.steps,
        "guidance": request.guidance,
        "seed": request.seed,
        "scheduler": generated.scheduler.name(),
        "model": args.model,
        "latents": args.latents.as_ref().map(|p| p.display().to_string()),
        "dtype": format!("{dtype:?}").to_lowercase(),
        "generator": concat!("sdxl-worker ", env!("CARGO_PKG_VERSION")),
    });
    let mut text: Vec<(String, String)> = vec![("parameters".into(), parameters.to_string())];
    for key in ["prompt", "negative_prompt", "seed", "steps", "guidance", "scheduler", "model"] {
        match &parameters[key] {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => text.push((key.into(), s.clone())),
            other => text.push((key.into(), other.to_string())),
        }
    }
    let png = image.to_png(&text)?;
    std::fs::write(&args.out, png).with_context(|| format!("writing {}", args.out.display()))?;
    let total: f64 = generated.timings.steps.iter().map(|d| d.as_secs_f64()).sum();
    eprintln!(
        "wrote {} ({}x{}, {} steps in {:.2}s, decode {:.2}s)",
        args.out.display(),
        request.width,
        request.height,
        request.steps,
        total,
        generated.timings.decode.as_secs_f64()
    );
    Ok(())
}
