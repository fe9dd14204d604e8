"""The worker's per-op profiles (candle's ops and its own) beside the reference's per-kernel budget, by kind.

    python3 compare_profiles.py OUT_DIR

Reads, from OUT_DIR (what tools/gpu-bench/run.sh writes):
  * profile-candle.csv, profile-gameforge.csv: the worker's `profile` bench (one guided UNet step and one VAE
    decode, per run; its kinds are the layers it records, with each section's `total` and unrecorded `rest`);
  * profile-diffusers.csv: diffusers_bench.py --profile (per step and per decode, the kernels by kind).
Prints, per section, milliseconds by kind in one table: convolution, GEMM (dense layers and attention's
products on our side), attention (our softmax stages; the reference's fused attention kernels), norm, the rest,
and the total, with the ratio of ours to the reference. A file that is missing is a column of dashes.

The worker's times are its profile mode's (each op synchronised, so launches do not overlap): an upper bound on
what each kind costs inside an unprofiled step. The reference's are kernel self times from torch.profiler.
"""

import csv
import os
import sys

KINDS = ["conv", "gemm", "attention", "norm", "rest", "total"]

# The worker's record kinds, by the reference's kind they compare with.
OURS = {
    "conv": "conv",
    "linear": "gemm",
    "attn_scores": "gemm",
    "attn_values": "gemm",
    "attn_softmax": "attention",
    "attention": "attention",
    "group_norm": "norm",
    "group_norm_silu": "norm",
    "layer_norm": "norm",
    "total": "total",
}


def summed(path, entries):
    """{(section, kind): ms} summed over `entries(row)`'s (key, ms) for each row, or None when the file is missing."""
    if not os.path.exists(path):
        return None
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, ms in entries(row):
                out[key] = out.get(key, 0.0) + ms
    return out


def ours(path):
    """The worker's records by the reference's kinds (blocks contain op records: skipped)."""

    def entries(row):
        if row["kind"] != "block":
            yield (row["section"], OURS.get(row["kind"], "rest")), float(row["finished_ms"])

    return summed(path, entries)


def reference(path):
    """The reference's kernels by kind, and each also in the section's total."""

    def entries(row):
        for kind in (row["kind"], "total"):
            yield (row["section"], kind), float(row["self_ms"])

    return summed(path, entries)


def cell(table, key):
    if table is None or key not in table:
        return "—"
    return f"{table[key]:.2f}"


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    candle = ours(os.path.join(out_dir, "profile-candle.csv"))
    gameforge = ours(os.path.join(out_dir, "profile-gameforge.csv"))
    diffusers = reference(os.path.join(out_dir, "profile-diffusers.csv"))
    if candle is None and gameforge is None and diffusers is None:
        print(f"no profiles in {out_dir}", file=sys.stderr)
        return 1
    for section in ["unet_step", "vae_decode"]:
        print(f"{section} (ms)     candle ops   ours   diffusers   ours/diffusers")
        for kind in KINDS:
            key = (section, kind)
            ratio = "—"
            if gameforge and diffusers and gameforge.get(key) and diffusers.get(key):
                ratio = f"{gameforge[key] / diffusers[key]:.2f}×"
            print(f"  {kind:<12} {cell(candle, key):>10} {cell(gameforge, key):>8} {cell(diffusers, key):>9}   {ratio:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
