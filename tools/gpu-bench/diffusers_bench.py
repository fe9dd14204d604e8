"""Times the reference diffusers StableDiffusionXLPipeline the way `cargo bench --bench pipeline` times the worker.

    python3 diffusers_bench.py MODEL_DIR [--width W] [--height H] [--steps N] [--guidance G] [--runs R]
                               [--dtype f16|f32] [--json OUT.json] [--profile OUT.csv]

Same prompt, negative prompt, seeds-per-run and default scheduler (the model folder's) as the Rust bench. One
warm-up run first; then R timed runs. Every time is taken after torch.cuda.synchronize(), so it is the GPU's
time, not the launch time:
  * text:   pipe.encode_prompt (both encoders, prompt and negative), wrapped;
  * step:   the interval between consecutive step-end callbacks (UNet on the batch of 2, guidance, scheduler
            step), so the first step of each run is not counted;
  * decode: pipe.vae.decode, wrapped (the pipeline's own f16 -> f32 cast of the VAE weights when the VAE config
            says force_upcast is outside it);
  * end to end: the whole pipeline call, output_type="np".
Peak memory: torch.cuda.max_memory_allocated / max_memory_reserved over the timed runs (weights included).
--profile: after the timed runs, torch.profiler over one run's denoising (output_type="latent", so no decode;
per step is its total over the steps, text encoding included) and over one VAE decode as the pipeline runs it:
every kernel (on a GPU; aten ops on the CPU) with its calls and self time to OUT.csv by section (unet_step,
vae_decode), and each section's time by kind (convolution, GEMM, attention, norm, the rest) printed: the
reference's per-kernel budget beside the worker's `profile` bench (compare_profiles.py puts them side by side).
Runs on the CPU too (for checking the script without a GPU).
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time

import torch

PROMPT = "a castle on a hill, golden hour, highly detailed"
NEGATIVE = "blurry"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--dtype", choices=["f16", "f32"], default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--profile", default=None)
    a = p.parse_args()

    import diffusers
    import transformers
    from diffusers import StableDiffusionXLPipeline

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = {"f16": torch.float16, "f32": torch.float32}[a.dtype or ("f16" if cuda else "f32")]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    # The fp16 variant where the folder has one (sdxl-worker random-model --dtype f16 writes *.fp16.safetensors).
    variant = "fp16" if glob.glob(os.path.join(a.model, "unet", "*.fp16*.safetensors")) else None
    t0 = time.perf_counter()
    pipe = StableDiffusionXLPipeline.from_pretrained(
        a.model, torch_dtype=dtype, variant=variant, use_safetensors=True
    ).to(device)
    sync()
    load = time.perf_counter() - t0
    pipe.set_progress_bar_config(disable=True)

    texts, decodes, step_marks = [], [], []
    encode_prompt = pipe.encode_prompt

    def timed_encode(*args, **kwargs):
        sync()
        s = time.perf_counter()
        out = encode_prompt(*args, **kwargs)
        sync()
        texts.append(time.perf_counter() - s)
        return out

    pipe.encode_prompt = timed_encode
    vae_decode = pipe.vae.decode

    def timed_decode(*args, **kwargs):
        sync()
        s = time.perf_counter()
        out = vae_decode(*args, **kwargs)
        sync()
        decodes.append(time.perf_counter() - s)
        return out

    pipe.vae.decode = timed_decode

    def on_step_end(_pipe, _i, _t, kwargs):
        sync()
        step_marks.append(time.perf_counter())
        return kwargs

    def run(seed):
        step_marks.clear()
        g = torch.Generator(device=device).manual_seed(seed)
        sync()
        s = time.perf_counter()
        pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            width=a.width,
            height=a.height,
            num_inference_steps=a.steps,
            guidance_scale=a.guidance,
            generator=g,
            output_type="np",
            callback_on_step_end=on_step_end,
        )
        sync()
        total = time.perf_counter() - s
        return total, [b - c for c, b in zip(step_marks, step_marks[1:])]

    with torch.inference_mode():
        warm_total, _ = run(1000)
        texts.clear()
        decodes.clear()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        totals, steps = [], []
        for r in range(a.runs):
            total, st = run(r)
            totals.append(total)
            steps += st

    ms = lambda v: v * 1000.0  # noqa: E731
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype),
        "vae_dtype_at_rest": str(pipe.vae.dtype),
        "vae_force_upcast": bool(pipe.vae.config.force_upcast),
        "attention": "torch scaled_dot_product_attention (diffusers' default AttnProcessor2_0)",
        "scheduler": type(pipe.scheduler).__name__,
        "width": a.width,
        "height": a.height,
        "steps": a.steps,
        "guidance": a.guidance,
        "runs": a.runs,
        "load_ms": ms(load),
        "warmup_ms": ms(warm_total),
        "text_ms_median": ms(statistics.median(texts)),
        "step_ms_median": ms(statistics.median(steps)),
        "step_ms_min": ms(min(steps)),
        "step_ms_max": ms(max(steps)),
        "step_count": len(steps),
        "decode_ms_median": ms(statistics.median(decodes)),
        "end_to_end_ms_median": ms(statistics.median(totals)),
        "end_to_end_ms_all": [ms(t) for t in totals],
    }
    if cuda:
        result["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    print(json.dumps(result, indent=1))
    print(
        f"reference diffusers {diffusers.__version__} torch {torch.__version__} on {result['device']}, {dtype}, "
        f"{a.width}x{a.height}, {a.steps} steps, guidance {a.guidance}, {result['scheduler']}\n"
        f"load {result['load_ms']:.0f} ms; text {result['text_ms_median']:.2f} ms; unet step median "
        f"{result['step_ms_median']:.2f} ms (n={len(steps)}); vae decode {result['decode_ms_median']:.2f} ms; "
        f"end to end median {result['end_to_end_ms_median']:.1f} ms (n={a.runs})"
        + (f"; peak allocated {result['peak_allocated_mib']:.0f} MiB" if cuda else "")
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    if a.profile:
        with torch.inference_mode():
            profile_sections(pipe, a, cuda, sync)


# Kernel and op names by kind, first match wins: cuDNN's and cutlass's convolution kernels name their pass
# (fprop, implicit gemm, conv), attention kernels their algorithm.
KINDS = [
    ("attention", r"fmha|flash|attention|sdpa|softmax"),
    ("conv", r"conv|fprop|implicit_?gemm|winograd|im2col|dgrad|cudnn"),
    ("gemm", r"gemm|matmul|\bmm\b|addmm|linear|cutlass|xmma|cublas"),
    ("norm", r"norm"),
]


def kind_of(name):
    import re

    low = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, low):
            return kind
    return "rest"


def profiled(fn, cuda):
    """Each kernel (GPU) or op (CPU) of one call of fn: (name, calls, self microseconds)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
    rows = []
    for e in prof.key_averages():
        device_us = getattr(e, "self_device_time_total", 0) or 0
        # On a GPU the kernels are the budget (the CPU-side op events only launch them); on the CPU, the ops.
        if cuda and device_us <= 0:
            continue
        rows.append((e.key, e.count, device_us if cuda else e.self_cpu_time_total))
    return rows


def profile_sections(pipe, a, cuda, sync):
    import csv

    device = "cuda" if cuda else "cpu"
    latents = {}

    def denoise():
        g = torch.Generator(device=device).manual_seed(0)
        latents["x"] = pipe(PROMPT, negative_prompt=NEGATIVE, width=a.width, height=a.height,
                            num_inference_steps=a.steps, guidance_scale=a.guidance, generator=g,
                            output_type="latent").images
        sync()

    def decode():
        # As the pipeline decodes: diffusers' partial upcast of a force_upcast VAE, the latents unscaled.
        vae = pipe.vae
        upcast = vae.dtype == torch.float16 and vae.config.force_upcast
        if upcast:
            pipe.upcast_vae()
        x = latents["x"].to(next(iter(vae.post_quant_conv.parameters())).dtype)
        vae.decode(x / vae.config.scaling_factor, return_dict=False)
        sync()
        if upcast:
            vae.to(dtype=torch.float16)

    sections = [("unet_step", profiled(denoise, cuda), a.steps), ("vae_decode", profiled(decode, cuda), 1)]
    with open(a.profile, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "kind", "name", "calls", "self_ms"])
        for section, rows, per in sections:
            for name, calls, us in sorted(rows, key=lambda r: -r[2]):
                w.writerow([section, kind_of(name), name, calls / per, us / 1000 / per])
    where = "GPU kernels" if cuda else "CPU ops (self time)"
    for section, rows, per in sections:
        total = sum(us for _, _, us in rows) / 1000 / per
        print(f"profile {section}: {total:.1f} ms of {where} per {'step' if per > 1 else 'decode'}")
        by_kind = {}
        for name, _, us in rows:
            by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + us / 1000 / per
        for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            print(f"profile {section} {kind:<10} {ms:9.2f} ms  {100 * ms / (total or 1):5.1f}%")
        for name, calls, us in sorted(rows, key=lambda r: -r[2])[:10]:
            print(f"profile {section} top {us / 1000 / per:9.3f} ms {calls / per:7.1f}x  {kind_of(name):<9} {name[:80]}")
    print(f"wrote {a.profile}")

if __name__ == "__main__":
    sys.exit(main())
