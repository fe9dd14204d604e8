#!/usr/bin/env bash
# The worker's CPU path and the reference diffusers pipeline, side by side on this machine in one run: the same
# model folder, prompt, size, steps and guidance, one after the other per case, and one table of the ratios.
# Run by hand on an otherwise idle machine (BENCHMARKS.md records the figures); CI never runs it.
#
#   tools/cpu-bench/run.sh [OUT_DIR]          (default OUT_DIR: ${TMPDIR:-/tmp}/gameforge-cpu-bench)
#
# Environment:
#   MODEL   the full-size SDXL base architecture with random weights (default ${TMPDIR:-/tmp}/sdxl-base-random;
#           written by `sdxl-worker random-model` when absent: 6.9 GB, about a minute)
#   RUNS    timed runs per case and side after one warm-up (default 1)
#   CASES   which cases, by name (default: all of them, in this order):
#             full-256     the full-size architecture, 256², 4 steps, guidance 5 (a batch of 2 per step)
#             full-512     the same at 512²
#             turbo-512    512², 4 steps, no guidance (a few-step distilled model's job: a batch of 1)
#             tiny         the committed tiny model (tests/fixtures/tiny-sdxl-a), 64², 30 steps, guidance 5
#   The reference's Python environment is tools/sdxl-reference/venv.sh's. Both sides use every core
#   (torch's default thread count, candle's rayon pool).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-${TMPDIR:-/tmp}/gameforge-cpu-bench}"
model="${MODEL:-${TMPDIR:-/tmp}/sdxl-base-random}"
runs="${RUNS:-1}"
cases="${CASES:-full-256 full-512 turbo-512 tiny}"
mkdir -p "$out"
cd "$root"

venv="$(tools/sdxl-reference/venv.sh)"
cargo build --release --quiet -p sdxl-worker --bin sdxl-worker --bench pipeline
if [[ ! -f "$model/model_index.json" ]]; then
    echo "run.sh: writing the full-size random model to $model" >&2
    target/release/sdxl-worker random-model --from worker/architectures/sdxl-base --out "$model" --dtype f16 >&2
fi

summary="$out/summary.tsv"
printf 'case\tside\ttext_ms\tstep_ms\tdecode_ms\tend_to_end_ms\n' > "$summary"
for case in $cases; do
    case "$case" in
        full-256) dir="$model" size=256 steps=4 guidance=5 ;;
        full-512) dir="$model" size=512 steps=4 guidance=5 ;;
        turbo-512) dir="$model" size=512 steps=4 guidance=0 ;;
        tiny) dir="$root/worker/tests/fixtures/tiny-sdxl-a" size=64 steps=30 guidance=5 ;;
        *) echo "run.sh: unknown case $case" >&2; exit 2 ;;
    esac
    echo "== $case: $size², $steps steps, guidance $guidance ==" >&2
    cargo bench --quiet -p sdxl-worker --bench pipeline -- --model "$dir" --width "$size" --height "$size" \
        --steps "$steps" --guidance "$guidance" --runs "$runs" --cpu | tee "$out/$case.candle.txt" >&2
    "$venv/bin/python" tools/gpu-bench/diffusers_bench.py "$dir" --width "$size" --height "$size" \
        --steps "$steps" --guidance "$guidance" --runs "$runs" --dtype f32 --json "$out/$case.diffusers.json" \
        > "$out/$case.diffusers.txt"
    tail -n 3 "$out/$case.diffusers.txt" >&2
    python3 - "$case" "$out/$case.candle.txt" "$out/$case.diffusers.json" >> "$summary" <<'PY'
import json, re, sys
case, candle, reference = sys.argv[1:]
text = open(candle).read()
def figure(label):
    m = re.search(rf"^{label}\s+([0-9.]+) ms", text, re.M)
    return float(m.group(1)) if m else float("nan")
ours = [figure("text"), figure("unet step"), figure("vae decode"), figure("end to end")]
ref = json.load(open(reference))
theirs = [ref["text_ms_median"], ref["step_ms_median"], ref["decode_ms_median"], ref["end_to_end_ms_median"]]
for side, values in (("candle", ours), ("diffusers", theirs)):
    print("\t".join([case, side] + [f"{v:.1f}" for v in values]))
print("\t".join([case, "ratio"] + [f"{a / b:.2f}" for a, b in zip(ours, theirs)]))
PY
done
echo "== summary (ratio: candle / diffusers; below 1 is faster) ==" >&2
column -t -s $'\t' "$summary"
