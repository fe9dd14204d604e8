#!/usr/bin/env bash
# Builds what tools/gpu-bench/run.sh needs on the GPU machine, here, on a machine without a GPU: the worker's
# CUDA build with cuDNN (`sdxl-worker`, its `pipeline` and `profile` benches and gameforge-cuda's GPU tests,
# sm_90 / CUDA 13.0) and the reference's Python wheels.
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
#   3. `cargo build --release` of sdxl-worker (`--bin sdxl-worker --bench pipeline --bench profile`) and
#      gameforge-cuda (`--test gpu`), both with the `cudnn` feature, with CUDA_COMPUTE_CAP=90 and
#      CUDARC_CUDA_VERSION=13000, thin LTO off and 16 codegen units (faster to build; the opt-levels are the
#      workspace's);
#   4. .gpu/dist/: sdxl-worker-cuda.tar.xz (the four binaries, stripped), reference-site.tar.xz (the wheels of
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

# 3. build
(
    cd "$gpu/src"
    export PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 CUDA_TOOLKIT_ROOT_DIR="$link"
    export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    # One invocation: two would unify features differently (the tests' dev-dependencies) and rebuild candle.
    cargo build --release -p sdxl-worker -p gameforge-cuda --features sdxl-worker/cudnn,gameforge-cuda/cudnn \
        --bin sdxl-worker --bench pipeline --bench profile --test gpu \
        --message-format=json-render-diagnostics >"$gpu/artifacts.json"
)

# 4. dist
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
tar -C "$stage" -cf - "${binaries[@]}" | xz -9e -T2 >"$gpu/dist/sdxl-worker-cuda.tar.xz"
rm -rf "$stage/whl" "$stage/site"
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d "$stage/whl" \
    diffusers==0.35.2 transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2
# Installed here by unzipping (what pip does for these), so that they travel as one xz stream (7 MB, not 20).
mkdir -p "$stage/site"
for w in "$stage"/whl/*.whl; do unzip -q -o "$w" -d "$stage/site"; done
tar -C "$stage/site" -cf - . | xz -9 -T2 >"$gpu/dist/reference-site.tar.xz"
du -sh "$gpu/dist" "$gpu/dist"/*
