"""Runs `sdxl-worker generate` on the committed reference cases and compares its PNGs with the reference images.

    python3 correctness.py SDXL_WORKER FIXTURES_DIR WORK_DIR [--plan f16:CASE,... f32:all] [--budget SECONDS]
                           [--extra-arg ARG ...] [--json OUT.json]

Each case of FIXTURES_DIR/reference/cases.json (tiny models, 4 steps) is generated from the case's own initial
latents (`--latents` reads the tensor named `latents` in the case's file), with the case's prompt, negative
prompt (absent for None), size, steps, guidance and scheduler, in the dtype the plan names. The reference image
is diffusers' float output (HWC, 0..1); the PNG is 8-bit, so the figures are in 8-bit levels (1 level = 1/255)
and include up to half a level of rounding. The CPU f32 build is within 1 level (tests/generate_cli.rs).
Stops starting new runs when the budget is spent, and says which were skipped.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from safetensors.numpy import load_file


def main():
    p = argparse.ArgumentParser()
    p.add_argument("worker")
    p.add_argument("fixtures")
    p.add_argument("work")
    p.add_argument("--plan", nargs="+", default=["f32:all"], help="DTYPE:all or DTYPE:CASE,CASE")
    p.add_argument("--budget", type=float, default=1e9)
    p.add_argument("--extra-arg", action="append", default=[], help="passed to generate (e.g. --cpu)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    start = time.monotonic()
    cases = json.load(open(os.path.join(a.fixtures, "reference", "cases.json")))
    by_name = {c["name"]: c for c in cases}
    runs = []
    for item in a.plan:
        dtype, names = item.split(":", 1)
        chosen = cases if names == "all" else [by_name[n] for n in names.split(",")]
        runs += [(c, dtype) for c in chosen if (c, dtype) not in runs]
    os.makedirs(a.work, exist_ok=True)
    rows = []
    for case, dtype in runs:
        label = f"{case['name']:30} {dtype:4}"
        remaining = a.budget - (time.monotonic() - start)
        if remaining < 5:
            rows.append({"case": case["name"], "dtype": dtype, "skipped": "time budget spent"})
            print(f"{label} skipped (time budget spent)", flush=True)
            continue
        png = os.path.join(a.work, f"{case['name']}.{dtype}.png")
        cmd = [a.worker, "generate", "--model", os.path.join(a.fixtures, case["model"])]
        cmd += ["--prompt", case["prompt"]]
        if case["negative_prompt"] is not None:
            cmd += ["--negative-prompt", case["negative_prompt"]]
        cmd += ["--width", str(case["width"]), "--height", str(case["height"]), "--steps", str(case["steps"])]
        cmd += ["--guidance", repr(case["guidance"]), "--scheduler", case["scheduler"], "--dtype", dtype]
        cmd += ["--latents", os.path.join(a.fixtures, "reference", case["file"]), "--out", png] + a.extra_arg
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(5.0, min(60.0, remaining)))
        except subprocess.TimeoutExpired:
            rows.append({"case": case["name"], "dtype": dtype, "error": "timed out"})
            print(f"{label} ERROR timed out", flush=True)
            continue
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            rows.append({"case": case["name"], "dtype": dtype, "error": proc.stderr.strip()[-2000:]})
            print(f"{label} ERROR exit {proc.returncode}: {proc.stderr.strip()[-2000:]}", flush=True)
            continue
        reference = load_file(os.path.join(a.fixtures, "reference", case["file"]))["image"].astype(np.float64)
        ours = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
        if ours.shape != reference.shape:
            rows.append({"case": case["name"], "dtype": dtype, "error": f"shape {ours.shape} vs {reference.shape}"})
            print(f"{label} ERROR shape {ours.shape} vs {reference.shape}", flush=True)
            continue
        diff = np.abs(ours - reference * 255.0)
        row = {
            "case": case["name"],
            "dtype": dtype,
            "max_levels": float(diff.max()),
            "mean_levels": float(diff.mean()),
            "over_1_level": int((diff > 1.0).sum()),
            "values": int(diff.size),
            "seconds": seconds,
        }
        rows.append(row)
        print(
            f"{label} max {row['max_levels']:6.3f} levels, mean {row['mean_levels']:.4f}, "
            f"{row['over_1_level']}/{row['values']} values over 1 level ({seconds:.1f} s, whole process)",
            flush=True,
        )
    failed = [r for r in rows if "error" in r]
    for dtype in sorted({r["dtype"] for r in rows}):
        ok = [r for r in rows if r["dtype"] == dtype and "max_levels" in r]
        if ok:
            print(
                f"SUMMARY {dtype}: {len(ok)} cases run, worst max {max(r['max_levels'] for r in ok):.3f} levels "
                f"({max(r['max_levels'] for r in ok) / 255:.5f}), worst mean {max(r['mean_levels'] for r in ok):.4f} "
                f"levels, mean of means {np.mean([r['mean_levels'] for r in ok]):.4f} levels",
                flush=True,
            )
    skipped = [r for r in rows if "skipped" in r]
    print(f"SUMMARY {len(failed)} failed, {len(skipped)} skipped", flush=True)
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
