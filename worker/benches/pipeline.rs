//! End-to-end image time, per-step UNet time, VAE decode time and peak memory for one model folder.
//!
//! `cargo bench -p sdxl-worker --bench pipeline -- [--model DIR] [--width W] [--height H] [--steps N]
//!  [--guidance G] [--dtype f32|f16|bf16] [--runs R] [--cpu]`
//! Without `--model` it measures the committed tiny model. The full-size architecture with random weights:
//! `sdxl-worker random-model --from worker/architectures/sdxl-base --out DIR --dtype f32`, then `--model DIR`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use sdxl_worker::{GenerateRequest, LoadOptions, SdxlPipeline};

struct Options {
    model: PathBuf,
    width: Option<usize>,
    height: Option<usize>,
    steps: usize,
    guidance: f64,
    dtype: Option<DType>,
    runs: usize,
    cpu: bool,
}

fn parse() -> Options {
    let mut o = Options {
        model: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sdxl-a"),
        width: None,
        height: None,
        steps: 30,
        guidance: 5.0,
        dtype: None,
        runs: 3,
        cpu: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => o.model = PathBuf::from(value()),
            "--width" => o.width = Some(value().parse().expect("--width is a number")),
            "--height" => o.height = Some(value().parse().expect("--height is a number")),
            "--steps" => o.steps = value().parse().expect("--steps is a number"),
            "--guidance" => o.guidance = value().parse().expect("--guidance is a number"),
            "--runs" => o.runs = value().parse().expect("--runs is a number"),
            "--dtype" => {
                o.dtype = Some(match value().as_str() {
                    "f32" => DType::F32,
                    "f16" => DType::F16,
                    "bf16" => DType::BF16,
                    other => panic!("unknown dtype {other}"),
                })
            }
            "--cpu" => o.cpu = true,
            // cargo passes its own flags to bench binaries.
            _ => {}
        }
    }
    o
}

/// The process's peak resident memory (Linux), which on the CPU is the model's peak.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The median as Python's `statistics.median` takes it (the mean of the middle two of an even count), so figures
/// set beside the reference's (`tools/gpu-bench/diffusers_bench.py`) are the same statistic: with two runs the
/// upper one alone would report the slower run against the reference's mean.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2 } else { v[mid] }
}

fn main() -> anyhow::Result<()> {
    let o = parse();
    sdxl_worker::gpu_ops::GpuOps::from_env()?;
    let device = if o.cpu { Device::Cpu } else { Device::cuda_if_available(0)? };
    let dtype = o.dtype.unwrap_or(if device.is_cpu() { DType::F32 } else { DType::F16 });
    let load_start = Instant::now();
    let pipeline = SdxlPipeline::load(
        &o.model,
        LoadOptions { device: device.clone(), dtype, vae_tiling: sdxl_worker::VaeTiling::Off, memory_budget: None },
    )?;
    let load = load_start.elapsed();
    let size = pipeline.default_size();
    let mut request = GenerateRequest::new("a castle on a hill, golden hour, highly detailed");
    request.negative_prompt = Some("blurry".into());
    request.width = o.width.unwrap_or(size);
    request.height = o.height.unwrap_or(size);
    request.steps = o.steps;
    request.guidance = o.guidance;
    // Warm-up: the first run pays for kernel selection and page faults.
    pipeline.generate(&request, &mut |_| ControlFlow::Continue(()))?;
    let mut totals = Vec::new();
    let mut steps = Vec::new();
    let mut decodes = Vec::new();
    let mut texts = Vec::new();
    for run in 0..o.runs {
        request.seed = run as u64;
        let start = Instant::now();
        let generated = pipeline.generate(&request, &mut |_| ControlFlow::Continue(()))?;
        totals.push(start.elapsed());
        steps.extend(generated.timings.steps);
        decodes.push(generated.timings.decode);
        texts.push(generated.timings.text);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("model        {}", o.model.display());
    println!("device       {device:?}, {dtype:?}");
    println!(
        "image        {}x{}, {} steps, guidance {}",
        request.width, request.height, request.steps, request.guidance
    );
    println!("load         {:.1} ms", ms(load));
    println!("text         {:.2} ms (median of {})", ms(median(texts)), o.runs);
    println!("unet step    {:.2} ms (median of {} steps)", ms(median(steps.clone())), steps.len());
    println!("vae decode   {:.2} ms (median of {})", ms(median(decodes)), o.runs);
    println!("end to end   {:.1} ms (median of {})", ms(median(totals)), o.runs);
    match peak_rss_mib() {
        Some(mib) if device.is_cpu() => println!("peak memory  {mib:.0} MiB (process peak RSS)"),
        Some(mib) => println!("peak memory  host RSS {mib:.0} MiB (GPU memory not measured here)"),
        None => println!("peak memory  unavailable"),
    }
    Ok(())
}
