#!/usr/bin/env bash
# The worker's CUDA build on a GPU, against the diffusers reference on the same card, in one pass that fits a
# short device lease. Run on the GPU machine from the repository root, after tools/gpu-bench/prepare.sh has
# made the CUDA binaries and the wheels (DIST, default .gpu/dist):
#
#   OUT=/some/dir tools/gpu-bench/run.sh
#
# Phases (each bounded by `timeout`, all together by DEADLINE seconds; every log is written to $OUT as it
# goes, so a cut run still returns what it had):
#   setup        unpack the binaries, find the CUDA libraries, record the card, driver and toolkit
#   kernels      the worker's own CUDA ops (gameforge-cuda: group norm, scaled softmax, cuDNN convolution with
#                and without a workspace, flash attention) against f64 references at SDXL's shapes in f32, f16
#                and bf16 (its tests/gpu.rs)
#   correctness  `sdxl-worker generate` on the committed reference cases (tiny models) in f16 and f32, against
#                the reference images (tools/gpu-bench/correctness.py)
#   model        `sdxl-worker random-model` writes the full-size SDXL base architecture with random weights (fp16)
#                (in the background, during correctness)
#   profile      the worker's `profile` bench (zero weights, SIZE x SIZE, f16): per op, per block, enqueue against
#                synchronised time, with candle's ops (GAMEFORGE_GPU_OPS=candle, the build before gameforge-cuda)
#                and then the worker's own; CSVs in $OUT
#   candle       the worker's `pipeline` bench on that model: SIZE x SIZE, STEPS steps, guidance 5 (batch 2), f16
#   diffusers    the reference StableDiffusionXLPipeline on the same folder, same settings, fp16, then its
#                denoising and its decode under torch.profiler: kernels by kind to $OUT/profile-diffusers.csv
#   turbo        both again at TURBO_SIZE x TURBO_SIZE (512), 4 steps, no guidance (an SDXL-Turbo-style job;
#                TURBO=0 skips it)
#   profiles     the three profiles side by side by kind (compare_profiles.py), to $OUT/profiles.txt
#                (tools/gpu-bench/diffusers_bench.py, with DIST/reference-site.tar.xz first on PYTHONPATH: diffusers,
#                transformers 4.x, tokenizers and huggingface-hub as tools/sdxl-reference pins them; torch,
#                accelerate, safetensors, numpy and pillow are the machine's own)
# GPU memory is polled with nvidia-smi every 200 ms during each bench; the peak over the phase minus the idle
# reading before it is reported.
#
# Environment: OUT (default target/gpu-bench), DIST (default .gpu/dist), WORK (scratch, default /tmp/gpu-bench),
# SIZE (1024), STEPS (30), RUNS (3 timed runs after one warm-up), DEADLINE (seconds for the whole script, 550),
# MODEL (an existing model folder: skips the random-model phase), ARCH (the architecture the profile builds with
# zero weights, default worker/architectures/sdxl-base), TURBO (1: the turbo phase), TURBO_SIZE (512), CPU=1
# (check the script on a machine without a GPU: the binaries get --cpu, the kernels phase only lists its tests; use with
# MODEL=worker/tests/fixtures/tiny-sdxl-a ARCH=worker/tests/fixtures/tiny-sdxl-a SIZE=64 STEPS=4 TURBO_SIZE=64).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tools/gpu-bench"
out="${OUT:-$root/target/gpu-bench}"
dist="${DIST:-$root/.gpu/dist}"
work="${WORK:-/tmp/gpu-bench}"
size="${SIZE:-1024}"
steps="${STEPS:-30}"
runs="${RUNS:-3}"
deadline="${DEADLINE:-550}"
cpu_flag=()
[[ "${CPU:-0}" == 1 ]] && cpu_flag=(--cpu)
fixtures="$root/worker/tests/fixtures"
model="${MODEL:-$work/sdxl-base-random}"
arch="${ARCH:-$root/worker/architectures/sdxl-base}"
mkdir -p "$out" "$work"
summary="$out/summary.txt"
: >"$summary"
SECONDS=0

note() { echo "[$(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$summary"; }
# Seconds a phase may take: its own cap, or what is left before the deadline less a reserve for later phases.
allow() {
    local cap=$1 reserve=${2:-0} left=$((deadline - SECONDS - ${2:-0}))
    ((left < cap)) && cap=$left
    ((cap < 1)) && cap=1
    echo "$cap"
}
gpu_mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; }
poll_start() { # $1: label; polls into $work/mem-$1.csv
    [[ -n "${cpu_flag[*]}" ]] && return
    idle_mem=$(gpu_mem)
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 200 \
        >"$work/mem-$1.csv" 2>/dev/null &
    poll_pid=$!
}
poll_stop() { # $1: label
    [[ -n "${cpu_flag[*]}" ]] && return
    kill "$poll_pid" 2>/dev/null
    wait "$poll_pid" 2>/dev/null
    local peak
    peak=$(awk -F', *' '$2+0 > m { m = $2+0 } END { print m+0 }' "$work/mem-$1.csv")
    sed "s/^/$1, /" "$work/mem-$1.csv" >>"$out/gpumem.csv"
    note "$1: GPU memory used peak ${peak} MiB (nvidia-smi, 200 ms polls), idle before ${idle_mem} MiB, difference $((peak - ${idle_mem:-0})) MiB"
}

note "gpu-bench: size ${size}, steps ${steps}, runs ${runs}, deadline ${deadline}s, commit $(cat "$dist/HEAD_COMMIT" 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------- setup
{
    set -x
    date -u
    uname -a
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,persistence_mode --format=csv
    command -v nvcc && nvcc --version
    command -v cargo rustc || echo "no Rust toolchain on this machine"
    nproc
    free -g
    python3 --version
    python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'
    set +x
} >"$out/setup.log" 2>&1
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
note "card: ${card:-none}"

bin="$work/bin"
mkdir -p "$bin"
# tar -J needs the xz program; Python's tarfile does without it.
untar() { tar -xJf "$1" -C "$2" 2>/dev/null || python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
if ! untar "$dist/sdxl-worker-cuda.tar.xz" "$bin" >>"$out/setup.log" 2>&1; then
    note "setup: FAILED to unpack $dist/sdxl-worker-cuda.tar.xz"
fi
# The CUDA libraries the binaries were linked against (libcublas.so.13, libcublasLt.so.13, libcurand.so.10,
# libnvrtc.so.13, libcudart.so.13): the toolkit's, else those of the PyTorch wheels; libcuda.so.1 is the driver's.
libdirs=$(
    {
        for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 \
            /usr/local/nvidia/lib; do [[ -d $d ]] && echo "$d"; done
        python3 -c 'import nvidia, sys; print("\n".join(nvidia.__path__))' 2>/dev/null |
            while read -r p; do find "$p" -maxdepth 3 -name 'lib*.so*' -printf '%h\n' 2>/dev/null; done
        python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null
    } | grep -v stubs | awk '!seen[$0]++' | paste -sd:
)
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$bin/sdxl-worker" 2>/dev/null | grep -q 'not found'; then
    # Anywhere else on the machine.
    more=$(timeout 60 find / -xdev \( -name 'libcublas.so.13*' -o -name 'libcurand.so.10*' -o -name 'libcudart.so.13*' \
        -o -name 'libcudnn.so.9*' -o -name 'libcuda.so.1' \) -printf '%h\n' 2>/dev/null | grep -v stubs |
        awk '!seen[$0]++' | paste -sd:)
    echo "searched the disk for the CUDA libraries: $more" >>"$out/setup.log"
    [[ -n "$more" ]] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$more"
fi
{
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ls -la "$bin"
    ldd "$bin/sdxl-worker"
} >>"$out/setup.log" 2>&1
if ldd "$bin/sdxl-worker" 2>/dev/null | grep -q 'not found'; then
    note "setup: libraries not found: $(ldd "$bin/sdxl-worker" | grep 'not found' | awk '{print $1}' | paste -sd' ')"
fi
note "setup: done"

# ---------------------------------------------------------------- kernels
note "kernels: start"
if [[ -z "${cpu_flag[*]}" ]]; then
    timeout "$(allow 90 400)" "$bin/gameforge-cuda-gpu-tests" --test-threads=1 >"$out/kernels.log" 2>&1
    note "kernels: exit $? — $(grep -E '^test result|FAILED|panicked' "$out/kernels.log" | head -5 | paste -sd'|')"
else # no GPU to run them on: only that the binary loads
    "$bin/gameforge-cuda-gpu-tests" --list >"$out/kernels.log" 2>&1
    note "kernels: listed only (CPU=1), exit $? — $(grep -c ': test$' "$out/kernels.log") tests"
fi

# ---------------------------------------------------------------- model (background) + correctness
model_pid=
if [[ -z "${MODEL:-}" ]]; then
    rm -rf "$model"
    (
        s=$SECONDS
        timeout "$(allow 200 200)" "$bin/sdxl-worker" random-model --from "$root/worker/architectures/sdxl-base" \
            --out "$model" --dtype f16 >"$out/random-model.log" 2>&1
        rc=$?
        echo "random-model exit $rc after $((SECONDS - s)) s" >>"$out/random-model.log"
    ) &
    model_pid=$!
fi

note "correctness: start"
timeout "$(allow 120 330)" python3 "$here/correctness.py" "$bin/sdxl-worker" "$fixtures" "$work/correctness" \
    --budget "$(allow 110 330)" "${cpu_flag[@]/#/--extra-arg=}" \
    --plan f32:a-euler-cfg5-64x48 f16:a-euler-cfg5-64x48,b-euler-cfg5-96x64,a-ddim-cfg5-64x64,b-ddim-nocfg-64x64 \
    f32:all f16:all --json "$work/correctness.json" >"$out/correctness.log" 2>&1
note "correctness: exit $? — $(grep '^SUMMARY' "$out/correctness.log" | paste -sd'|')"

[[ -n "$model_pid" ]] && wait "$model_pid"
note "model: $model: $(tail -1 "$out/random-model.log" 2>/dev/null || echo given); $(du -sh "$model" 2>/dev/null | cut -f1)"

# ---------------------------------------------------------------- profile: candle's ops, then ours
for ops in candle gameforge; do
    note "profile ($ops): start"
    GAMEFORGE_GPU_OPS=$ops timeout "$(allow 60 220)" "$bin/sdxl-profile-bench" --width "$size" --height "$size" \
        --arch "$arch" --no-compare --csv "$out/profile-$ops.csv" "${cpu_flag[@]}" \
        >"$out/profile-$ops.log" 2>&1
    note "profile ($ops): exit $? — $(grep -E '^== ' "$out/profile-$ops.log" | paste -sd'|')"
done

# ---------------------------------------------------------------- reference packages (background) + candle bench
site="$work/site"
(
    rm -rf "$site" && mkdir -p "$site" && untar "$dist/reference-site.tar.xz" "$site" >"$work/site.log" 2>&1
    echo "unpacked reference packages: exit $?" >>"$work/site.log"
) &
site_pid=$!

note "candle: start"
poll_start candle
timeout "$(allow 200 170)" "$bin/sdxl-pipeline-bench" --model "$model" --width "$size" --height "$size" \
    --steps "$steps" --runs "$runs" "${cpu_flag[@]}" >"$out/candle-bench.log" 2>&1
rc=$?
poll_stop candle
note "candle: exit $rc — $(grep -E '^(device|unet step|vae decode|text|end to end|load|peak)' "$out/candle-bench.log" | paste -sd'|')"

# ---------------------------------------------------------------- diffusers
wait "$site_pid"
cat "$work/site.log" >"$out/diffusers.log"
note "diffusers: start ($(tail -1 "$work/site.log"))"
poll_start diffusers
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    timeout "$(allow 240 100)" python3 "$here/diffusers_bench.py" "$model" --width "$size" --height "$size" \
    --steps "$steps" --runs "$runs" --profile "$out/profile-diffusers.csv" >>"$out/diffusers.log" 2>&1
rc=$?
poll_stop diffusers
note "diffusers: exit $rc — $(grep -E '^(reference|load|profile (unet_step|vae_decode):)' "$out/diffusers.log" | paste -sd'|')"

# ---------------------------------------------------------------- turbo: TURBO_SIZE², 4 steps, unguided, both
turbo_size="${TURBO_SIZE:-512}"
if [[ "${TURBO:-1}" == 1 ]]; then
    timeout "$(allow 40 60)" "$bin/sdxl-pipeline-bench" --model "$model" --width "$turbo_size" \
        --height "$turbo_size" --steps 4 --guidance 0 --runs "$runs" "${cpu_flag[@]}" >"$out/candle-turbo.log" 2>&1
    note "turbo candle: exit $? — $(grep -E '^(unet step|vae decode|end to end|peak)' "$out/candle-turbo.log" | paste -sd'|')"
    PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
        timeout "$(allow 60 0)" python3 "$here/diffusers_bench.py" "$model" --width "$turbo_size" \
        --height "$turbo_size" --steps 4 --guidance 0 --runs "$runs" >"$out/diffusers-turbo.log" 2>&1
    note "turbo diffusers: exit $? — $(grep -E '^reference' "$out/diffusers-turbo.log" | paste -sd'|')"
fi
python3 "$here/compare_profiles.py" "$out" >"$out/profiles.txt" 2>&1
note "profiles: exit $? — $out/profiles.txt"
note "done"
