//! Where a guided UNet step and a VAE decode spend their time, at the real shapes, op by op.
//!
//! `cargo bench -p sdxl-worker --bench profile -- [--arch DIR] [--width W] [--height H] [--dtype f32|f16|bf16]
//!  [--runs R] [--cpu] [--csv FILE] [--no-compare]`
//!
//! The model is built from an architecture folder (default: the full-size SDXL base configs in
//! `worker/architectures/sdxl-base`) with zero weights, so nothing is written or read from disk: the time per
//! op does not depend on the values. The profile mode (`sdxl_worker::profile`) records every convolution, norm
//! and attention stage and every block; this prints the totals per kind, per block and the heaviest shapes, and
//! for each convolution shape also times candle's own convolution and a plain matmul of the same M/N/K (the
//! floor a convolution could reach). `--csv` writes every aggregated row, and per section its `total` (per run,
//! profiling's synchronisation included) and the `rest` no op recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sdxl_worker::attention::Slicing;
use sdxl_worker::config::{UNetConfig, VaeConfig, read_json};
use sdxl_worker::profile::{self, Record};
use sdxl_worker::unet::{AddedConditioning, UNet};
use sdxl_worker::vae::{Vae, VaePrecision};

struct Options {
    arch: PathBuf,
    width: usize,
    height: usize,
    dtype: Option<DType>,
    runs: usize,
    cpu: bool,
    csv: Option<PathBuf>,
    compare: bool,
}

fn parse() -> Options {
    let mut o = Options {
        arch: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("architectures/sdxl-base"),
        width: 256,
        height: 256,
        dtype: None,
        runs: 1,
        cpu: false,
        csv: None,
        compare: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--arch" => o.arch = PathBuf::from(value()),
            "--width" => o.width = value().parse().expect("--width is a number"),
            "--height" => o.height = value().parse().expect("--height is a number"),
            "--runs" => o.runs = value().parse().expect("--runs is a number"),
            "--csv" => o.csv = Some(PathBuf::from(value())),
            "--no-compare" => o.compare = false,
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

/// One row of the profile: every record of one kind and name, summed over the runs.
#[derive(Default)]
struct Row {
    count: usize,
    returned: Duration,
    finished: Duration,
}

fn aggregate(records: &[Record]) -> BTreeMap<(&'static str, String), Row> {
    let mut rows: BTreeMap<(&'static str, String), Row> = BTreeMap::new();
    for r in records {
        let row = rows.entry((r.kind, r.name.clone())).or_default();
        row.count += 1;
        row.returned += r.returned;
        row.finished += r.finished;
    }
    rows
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn timed(device: &Device, f: impl FnOnce() -> candle_core::Result<Tensor>) -> anyhow::Result<Duration> {
    device.synchronize()?;
    let start = Instant::now();
    let out = f()?;
    device.synchronize()?;
    drop(out);
    Ok(start.elapsed())
}

/// Parses the conv record name `[b, c, h, w]→[o, c, k, k] sS pP`.
fn conv_shape(name: &str) -> Option<([usize; 4], [usize; 4], usize, usize)> {
    let numbers: Vec<usize> = name
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let [b, c, h, w, o, ci, kh, kw, s, p] = numbers[..] else { return None };
    Some(([b, c, h, w], [o, ci, kh, kw], s, p))
}

/// candle's convolution and a matmul of the same M/N/K at one recorded shape, in ms.
fn compare_conv(name: &str, device: &Device, dtype: DType) -> anyhow::Result<(f64, f64, f64)> {
    let (input, weight, stride, padding) = conv_shape(name).with_context(|| format!("conv record {name}"))?;
    let x = Tensor::zeros(&input[..], dtype, device)?;
    let w = Tensor::zeros(&weight[..], dtype, device)?;
    let candle = timed(device, || x.conv2d(&w, padding, stride, 1, 1))?;
    let out_h = (input[2] + 2 * padding - weight[2]) / stride + 1;
    let out_w = (input[3] + 2 * padding - weight[3]) / stride + 1;
    let (m, n, k) = (weight[0], out_h * out_w, weight[1] * weight[2] * weight[3]);
    let lhs = Tensor::zeros((1, m, k), dtype, device)?;
    let rhs = Tensor::zeros((input[0], k, n), dtype, device)?;
    let matmul = timed(device, || lhs.broadcast_matmul(&rhs))?;
    let gflop = 2.0 * (input[0] * m * n * k) as f64 / 1e9;
    Ok((ms(candle), ms(matmul), gflop))
}

fn main() -> anyhow::Result<()> {
    let o = parse();
    sdxl_worker::gpu_ops::GpuOps::from_env()?;
    let device = if o.cpu { Device::Cpu } else { Device::cuda_if_available(0)? };
    let dtype = o.dtype.unwrap_or(if device.is_cpu() { DType::F32 } else { DType::F16 });
    let unet_config: UNetConfig = read_json(&o.arch.join("unet/config.json"))?;
    let vae_config: VaeConfig = read_json(&o.arch.join("vae/config.json"))?;
    let unet = UNet::new(VarBuilder::zeros(dtype, &device), &unet_config)?;
    // As the pipeline runs it: an f16 SDXL VAE decodes in f32 from its mid block on.
    let vae = Vae::new(VarBuilder::zeros(dtype, &device), &vae_config, VaePrecision::for_pipeline(dtype, &vae_config))?;
    let (lh, lw) = (o.height / vae.downscale(), o.width / vae.downscale());
    let latent = vae.latent_channels();

    // A guided step: a batch of 2 (unconditional and conditional), as the pipeline runs it.
    let sample = Tensor::zeros((2, unet_config.in_channels, lh, lw), dtype, &device)?;
    let plan = unet_config.plan()?;
    let context = Tensor::zeros((2, 77, plan.cross_attention_dim), dtype, &device)?;
    let added = plan.text_time.map(|tt| -> anyhow::Result<AddedConditioning> {
        Ok(AddedConditioning {
            text_embeds: Tensor::zeros((2, tt.input_dim - 6 * tt.time_embed_dim), dtype, &device)?,
            time_ids: Tensor::new(&[[1024f32, 1024., 0., 0., 1024., 1024.]; 2], &device)?,
        })
    });
    let added = added.transpose()?;
    let latents = Tensor::zeros((1, latent, lh, lw), dtype, &device)?;

    let step = || unet.forward(&sample, 500.0, &context, added.as_ref(), Slicing::Full).map(drop);
    let decode = || vae.decode_unscaled(&latents).map(drop);
    // Warm-up: the first run pays for page faults (and on a GPU, kernel loading).
    step()?;
    decode()?;

    let mut sections = Vec::new();
    for (section, run) in [("unet_step", &step as &dyn Fn() -> _), ("vae_decode", &decode)] {
        profile::enable(true);
        let start = Instant::now();
        for _ in 0..o.runs {
            run()?;
        }
        device.synchronize()?;
        let total = start.elapsed() / o.runs as u32;
        profile::enable(false);
        sections.push((section, total, profile::take()));
    }

    println!("architecture {}", o.arch.display());
    println!(
        "device       {device:?}, {dtype:?}, {}x{} ({lh}x{lw} latents), {} run(s), threads {}",
        o.width,
        o.height,
        o.runs,
        candle_core::utils::get_num_threads()
    );
    let mut csv = String::from("section,kind,name,count,returned_ms,finished_ms,candle_conv_ms,matmul_ms,gflop\n");
    for (section, total, records) in &sections {
        let runs = o.runs as f64;
        let rows = aggregate(records);
        println!("\n== {section}: {:.1} ms per run (with profiling's synchronisation) ==", ms(*total));
        let mut kinds: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
        for ((kind, _), row) in &rows {
            let entry = kinds.entry(kind).or_default();
            entry.0 += row.count;
            entry.1 += row.finished;
        }
        let mut ops = Duration::ZERO;
        for (kind, (count, time)) in &kinds {
            if *kind != "block" {
                ops += *time;
            }
            println!("{kind:<16} {:>6} calls {:>10.1} ms per run", count / o.runs, ms(*time) / runs);
        }
        let rest = (ms(*total) - ms(ops) / runs).max(0.0);
        println!(
            "{:<16} {:>6}       {rest:>10.1} ms per run (not recorded: adds, casts, copies, embeddings)",
            "rest", ""
        );
        csv.push_str(&format!("{section},total,\"\",1,{0:.3},{0:.3},NaN,NaN,NaN\n", ms(*total)));
        csv.push_str(&format!("{section},rest,\"\",1,{rest:.3},{rest:.3},NaN,NaN,NaN\n"));
        println!("-- blocks --");
        for ((_, name), row) in rows.iter().filter(|((kind, _), _)| *kind == "block") {
            println!("{name:<16} {:>10.1} ms", ms(row.finished) / runs);
        }
        println!(
            "-- heaviest shapes (ms per run; conv: ours / candle's conv / matmul of the same M·N·K, GFLOP/s ours) --"
        );
        let mut heavy: Vec<_> = rows.iter().filter(|((kind, _), _)| *kind != "block").collect();
        heavy.sort_by_key(|(_, row)| std::cmp::Reverse(row.finished));
        for (i, ((kind, name), row)) in heavy.iter().enumerate() {
            let per_run = ms(row.finished) / runs;
            let per_call = ms(row.finished) / row.count as f64;
            let (candle, matmul, gflop) = if *kind == "conv" && o.compare {
                compare_conv(name, &device, dtype)?
            } else {
                (f64::NAN, f64::NAN, f64::NAN)
            };
            if i < 25 {
                let compare = if candle.is_nan() {
                    String::new()
                } else {
                    format!(
                        " | per call {per_call:.1} / {candle:.1} / {matmul:.1} ms, {:.0} GFLOP/s",
                        gflop / per_call * 1000.0
                    )
                };
                println!("{kind:<16} {:>3}× {name:<48} {per_run:>9.1}{compare}", row.count / o.runs);
            }
            csv.push_str(&format!(
                "{section},{kind},\"{name}\",{},{:.3},{:.3},{candle:.3},{matmul:.3},{gflop:.3}\n",
                row.count / o.runs,
                ms(row.returned) / runs,
                per_run
            ));
        }
    }
    if let Some(path) = &o.csv {
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
