#!/usr/bin/env bash
# Builds what tools/gpu-bench/run.sh needs on the GPU machine, here, on a machine without a GPU: the worker's
# CUDA build (`sdxl-worker` and its `pipeline` bench, sm_90 / CUDA 13.0) and the reference's Python wheels.
# The GPU machine has nvcc and PyTorch but no Rust toolchain and no network, so the binaries travel built.
#
#   tools/gpu-bench/prepare.sh            # writes .gpu/dist/ (ignored: add /.gpu/ to .git/info/exclude)
#
# What it does:
#   1. a snapshot of the repository at HEAD (`git archive`, without worker/tests/fixtures) in .gpu/src, trimmed to
#      the workspace members the worker needs (crates/contract, crates/aws, worker) and without the worker's
#      emulator dev-dependency (gameforge-localaws, only for the queue_overhead bench and tests), so that edits in
#      the working tree do not reach the build;
#   2. CUDA 13.0's compiler and the libraries to link against, from PyPI into a scratch venv (nvcc, cicc, the
#      runtime headers, cuBLAS, cuRAND, NVRTC; versions pinned below: the PTX must not be newer than the GPU
#      machine's driver, 580 = CUDA 13.0), and a link-time stand-in for the driver's libcuda.so.1 (every cu*
#      function cudarc declares, empty; the real driver library is loaded at run time);
#   3. `cargo build --release -p sdxl-worker --features cuda --bin sdxl-worker --bench pipeline` with
#      CUDA_COMPUTE_CAP=90 and CUDARC_CUDA_VERSION=13000, thin LTO off and 16 codegen units (faster to build; the
#      opt-levels are the workspace's);
#   4. .gpu/dist/: sdxl-worker-cuda.tar.xz (both binaries, stripped), reference-site.tar.xz (the wheels of
#      diffusers 0.35.2, transformers 4.57.6, tokenizers 0.22.2 and huggingface-hub 0.36.2 for Python 3.12, as
#      tools/sdxl-reference pins them, unpacked; the rest is on the GPU machine), HEAD_COMMIT.
#
# Environment: CUDA_VENV (default /tmp/gpu-cuda-venv), CARGO_TARGET_DIR (default /tmp/gpu-target).
# First run: ~1.2 GB of wheels and a release build from scratch (about 25 minutes on 2 cores).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gpu="$root/.gpu"
venv="${CUDA_VENV:-/tmp/gpu-cuda-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/gpu-target}"
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
s = re.sub(r"members = \[.*?\]", 'members = ["crates/contract", "crates/aws", "worker"]', s, count=1, flags=re.S)
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
python3 - "$link/cuda_stub.c" "${CARGO_HOME:-$HOME/.cargo}" <<'PY'
import glob, re, sys
(driver,) = glob.glob(f"{sys.argv[2]}/registry/src/*/cudarc-0.19.10/src/driver/sys/mod.rs")
src = open(driver).read()
names = sorted(set(re.findall(r'extern "C" \{\s*fn (cu\w+)\(', src)))
open(sys.argv[1], "w").write("".join(f"void {n}(void) {{}}\n" for n in names))
PY
gcc -shared -fPIC -o "$link/lib/libcuda.so" "$link/cuda_stub.c" -Wl,-soname,libcuda.so.1
for l in cublas cublasLt cudart nvrtc; do ln -sf "$cuda/lib/lib$l.so.13" "$link/lib/lib$l.so"; done
ln -sf "$cuda/lib/libcurand.so.10" "$link/lib/libcurand.so"

# 3. build
(
    cd "$gpu/src"
    export PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 CUDA_TOOLKIT_ROOT_DIR="$link"
    export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    cargo build --release -p sdxl-worker --features cuda --bin sdxl-worker --bench pipeline
)

# 4. dist
stage="$gpu/stage"
rm -rf "$stage"
mkdir -p "$stage"
cp "$CARGO_TARGET_DIR/release/sdxl-worker" "$stage/sdxl-worker"
bench=$(ls -t "$CARGO_TARGET_DIR"/release/deps/pipeline-* | grep -v '\.d$' | head -1)
cp "$bench" "$stage/sdxl-pipeline-bench"
strip "$stage/sdxl-worker" "$stage/sdxl-pipeline-bench"
tar -C "$stage" -cf - sdxl-worker sdxl-pipeline-bench | xz -9e -T2 >"$gpu/dist/sdxl-worker-cuda.tar.xz"
rm -rf "$stage/whl" "$stage/site"
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d "$stage/whl" \
    diffusers==0.35.2 transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2
# Installed here by unzipping (what pip does for these), so that they travel as one xz stream (7 MB, not 20).
mkdir -p "$stage/site"
for w in "$stage"/whl/*.whl; do unzip -q -o "$w" -d "$stage/site"; done
tar -C "$stage/site" -cf - . | xz -9 -T2 >"$gpu/dist/reference-site.tar.xz"
du -sh "$gpu/dist" "$gpu/dist"/*
