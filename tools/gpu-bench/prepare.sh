#!/usr/bin/env bash
# Builds what tools/gpu-bench/run.sh needs on the GPU machine, here, on a machine without a GPU: the worker's
# CUDA build with cuDNN and flash attention (`sdxl-worker`, its `pipeline` and `profile` benches and
# gameforge-cuda's GPU tests, sm_90 / CUDA 13.0) and the reference's Python wheels.
# The GPU machine has nvcc and PyTorch but no Rust toolchain and no network, so the binaries travel built.
#
#   tools/gpu-bench/prepare.sh            # writes .gpu/dist/ (ignored: add /.gpu/ to .git/info/exclude)
#
# What it does:
#   1. a snapshot of the repository at HEAD (`git archive`, without worker/tests/fixtures) in .gpu/src, trimmed to
#      the workspace members the worker needs (crates/contract, crates/aws, crates/kernels, crates/cuda, worker)
#      and without the worker's emulator dev-dependency (gameforge-localaws, only for the queue_overhead bench and
#      tests), so that edits in the working tree do not reach the build;
#   2. CUDA 13.0's compiler and the libraries to link against, from PyPI into a scratch venv (nvcc, cicc, the
#      runtime headers, cuBLAS, cuRAND, NVRTC; versions pinned below: the PTX must not be newer than the GPU
#      machine's driver, 580 = CUDA 13.0), and link-time stand-ins for the driver's libcuda.so.1 and for
#      libcudnn.so.9 (every cu*/cudnn* function cudarc declares, empty; the real libraries are loaded at run time:
#      the driver's, and cuDNN from the GPU machine's PyTorch wheels);
#   3. flash attention's CUTLASS without network: candle-flash-attn's build script clones CUTLASS at a pinned
#      commit through cudaforge, which uses a checkout in its cache ($CUDAFORGE_HOME/git/checkouts/cutlass-<the
#      commit's first 16 digits>) when it has include/ and `git rev-parse HEAD` answers the pinned commit. The
#      headers come from PyPI's nvidia-cutlass 3.5.1 (the pin is of 3.5's time; only include/ and
#      tools/util/include are used), and the checkout is a git repository whose detached HEAD names the pin;
#   4. `cargo build --release` of sdxl-worker (`--bin sdxl-worker --bench pipeline --bench profile`) and
#      gameforge-cuda (`--test gpu`), both with the `cudnn` and `flash-attn` features, with CUDA_COMPUTE_CAP=90
#      and CUDARC_CUDA_VERSION=13000, thin LTO off and 16 codegen units (faster to build; the opt-levels are the
#      workspace's). Flash attention's 53 kernel files take about four minutes and 3 GB each on one core (hours
#      on two cores): their objects are kept in $FLASH_ATTN_CACHE (CANDLE_FLASH_ATTN_BUILD_DIR), and rebuilt only
#      when candle-flash-attn, the nvcc arguments or CUDA_COMPUTE_CAP change. CUDA 13's cudaTypedefs.h has only
#      the versioned names of two driver entry points this CUTLASS names unversioned: NVCC_APPEND_FLAGS defines
#      them as the CUDA 12.0 versions (the ones CUDA 12's headers gave those names);
#   5. .gpu/dist/: sdxl-worker-cuda.tar.xz (the four binaries, stripped), reference-site.tar.xz (the wheels of
#      diffusers 0.35.2, transformers 4.57.6, tokenizers 0.22.2 and huggingface-hub 0.36.2 for Python 3.12, as
#      tools/sdxl-reference pins them, unpacked; the rest is on the GPU machine), HEAD_COMMIT.
#
# Environment: CUDA_VENV (default /tmp/gpu-cuda-venv), CARGO_TARGET_DIR (default /tmp/gpu-target),
# CUDAFORGE_HOME (default .gpu/cudaforge), FLASH_ATTN_CACHE (default .gpu/flash-attn).
# First run: ~1.2 GB of wheels, flash attention's kernels (2 h 04 min on 2 cores, once: see step 4) and a release
# build from scratch (about 25 minutes on 2 cores); with the kernels kept, about 19 minutes, 12 of them xz.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gpu="$root/.gpu"
venv="${CUDA_VENV:-/tmp/gpu-cuda-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/gpu-target}"
export CUDAFORGE_HOME="${CUDAFORGE_HOME:-$gpu/cudaforge}"
flash_cache="${FLASH_ATTN_CACHE:-$gpu/flash-attn}"
cd "$root"

# 1. snapshot
rm -rf "$gpu/src"
mkdir -p "$gpu/src" "$gpu/dist"
git archive HEAD | tar -x -C "$gpu/src"
rm -rf "$gpu/src/worker/tests/fixtures" "$gpu/src/worker/benches/queue_overhead.rs"
git rev-parse HEAD >"$gpu/dist/HEAD_COMMIT"
python3 - "$gpu/src" <<'PY'
import re, sys
src = sys.argv[1]
p = f"{src}/Cargo.toml"
s = open(p).read()
members = '["crates/contract", "crates/aws", "crates/kernels", "crates/cuda", "worker"]'
s = re.sub(r"members = \[.*?\]", f"members = {members}", s, count=1, flags=re.S)
open(p, "w").write(s)
p = f"{src}/worker/Cargo.toml"
s = open(p).read()
s = s.replace("gameforge-localaws.workspace = true\n", "")
s = s.replace('[[bench]]\nname = "queue_overhead"\nharness = false\n', "")
open(p, "w").write(s)
PY

# 2. CUDA 13.0 toolchain and link libraries
if [[ ! -x "$venv/bin/python" ]]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 \
    nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.5.25
cuda="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
link="$gpu/cudalink"
rm -rf "$link"
mkdir -p "$link/lib"
(cd "$gpu/src" && cargo fetch -q)
for stub in driver:cuda:libcuda.so.1 cudnn:cudnn:libcudnn.so.9; do
    IFS=: read -r module lib soname <<<"$stub"
    python3 - "$link/$lib.c" "${CARGO_HOME:-$HOME/.cargo}" "$module" <<'PY'
import glob, re, sys
(sys_rs,) = glob.glob(f"{sys.argv[2]}/registry/src/*/cudarc-0.19.10/src/{sys.argv[3]}/sys/mod.rs")
names = sorted(set(re.findall(r'extern "C" \{\s*fn (cu\w+)\(', open(sys_rs).read())))
open(sys.argv[1], "w").write("".join(f"void {n}(void) {{}}\n" for n in names))
PY
    gcc -shared -fPIC -o "$link/lib/lib$lib.so" "$link/$lib.c" -Wl,-soname,"$soname"
done
for l in cublas cublasLt cudart nvrtc; do ln -sf "$cuda/lib/lib$l.so.13" "$link/lib/lib$l.so"; done
ln -sf "$cuda/lib/libcurand.so.10" "$link/lib/libcurand.so"

# 3. CUTLASS for flash attention
(
    cd "$gpu/src"
    flash_src="$(cargo metadata --format-version 1 --all-features | python3 -c '
import json, sys
(p,) = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "candle-flash-attn"]
print(p["manifest_path"].rsplit("/", 1)[0])')"
    commit="$(sed -n 's/^const CUTLASS_COMMIT: &str = "\([0-9a-f]\{40\}\)";$/\1/p' "$flash_src/build.rs")"
    [[ -n "$commit" ]] || { echo "no CUTLASS_COMMIT in $flash_src/build.rs" >&2; exit 1; }
    checkout="$CUDAFORGE_HOME/git/checkouts/cutlass-${commit:0:16}"
    if [[ ! -d "$checkout/include/cutlass" || "$(git -C "$checkout" rev-parse HEAD 2>/dev/null)" != "$commit" ]]; then
        rm -rf "$checkout" "$gpu/cutlass-whl"
        python3 -m pip download -q --disable-pip-version-check --no-deps -d "$gpu/cutlass-whl" nvidia-cutlass==3.5.1.0
        unzip -q -o "$gpu"/cutlass-whl/nvidia_cutlass-*.whl 'cutlass_library/source/include/*' \
            'cutlass_library/source/tools/util/include/*' -d "$gpu/cutlass-whl/x"
        mkdir -p "$checkout/tools/util"
        mv "$gpu/cutlass-whl/x/cutlass_library/source/include" "$checkout/include"
        mv "$gpu/cutlass-whl/x/cutlass_library/source/tools/util/include" "$checkout/tools/util/include"
        git -C "$checkout" init -q
        echo "$commit" >"$checkout/.git/HEAD"
        rm -rf "$gpu/cutlass-whl"
    fi
)
mkdir -p "$flash_cache"

# 4. build
(
    cd "$gpu/src"
    export PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 CUDA_TOOLKIT_ROOT_DIR="$link"
    export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    export CANDLE_FLASH_ATTN_BUILD_DIR="$flash_cache" CUDAFORGE_THREADS="$(nproc)"
    export NVCC_APPEND_FLAGS="-DPFN_cuTensorMapEncodeTiled=PFN_cuTensorMapEncodeTiled_v12000 \
-DPFN_cuTensorMapEncodeIm2col=PFN_cuTensorMapEncodeIm2col_v12000"
    # One invocation: two would unify features differently (the tests' dev-dependencies) and rebuild candle.
    cargo build --release -p sdxl-worker -p gameforge-cuda \
        --features sdxl-worker/cudnn,sdxl-worker/flash-attn,gameforge-cuda/cudnn,gameforge-cuda/flash-attn \
        --bin sdxl-worker --bench pipeline --bench profile --test gpu \
        --message-format=json-render-diagnostics >"$gpu/artifacts.json"
)

# 5. dist
stage="$gpu/stage"
rm -rf "$stage"
mkdir -p "$stage"
# Each binary as cargo reported it built (target name → file name in the archive).
python3 - "$gpu/artifacts.json" "$stage" <<'PY'
import json, shutil, sys
names = {"sdxl-worker": "sdxl-worker", "pipeline": "sdxl-pipeline-bench", "profile": "sdxl-profile-bench",
         "gpu": "gameforge-cuda-gpu-tests"}
found = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in names:
        found[names[m["target"]["name"]]] = m["executable"]
missing = sorted(set(names.values()) - set(found))
if missing:
    sys.exit(f"not built: {missing}")
for name, path in found.items():
    shutil.copy(path, f"{sys.argv[2]}/{name}")
PY
binaries=(sdxl-worker sdxl-pipeline-bench sdxl-profile-bench gameforge-cuda-gpu-tests)
(cd "$stage" && strip "${binaries[@]}")
# Each binary holds the same flash-attention kernels (about 240 MB): a dictionary larger than one binary lets xz
# store them once (the GPU machine needs as much memory to unpack).
tar -C "$stage" -cf - "${binaries[@]}" | xz -T1 --lzma2=preset=9,dict=512MiB >"$gpu/dist/sdxl-worker-cuda.tar.xz"
rm -rf "$stage/whl" "$stage/site"
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d "$stage/whl" \
    diffusers==0.35.2 transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2
# Installed here by unzipping (what pip does for these), so that they travel as one xz stream (7 MB, not 20).
mkdir -p "$stage/site"
for w in "$stage"/whl/*.whl; do unzip -q -o "$w" -d "$stage/site"; done
tar -C "$stage/site" -cf - . | xz -9 -T2 >"$gpu/dist/reference-site.tar.xz"
du -sh "$gpu/dist" "$gpu/dist"/*
