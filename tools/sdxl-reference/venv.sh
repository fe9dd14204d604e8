#!/usr/bin/env bash
# Makes sure the reference's Python environment (diffusers and torch, pinned in requirements.txt) exists and is
# current, and prints its path. Used by run.sh (the fixtures) and tools/cpu-bench/run.sh (the timings).
#
# Environment:
#   SDXL_REFERENCE_VENV  venv to use (default ${TMPDIR:-/tmp}/gameforge-sdxl-reference-venv); created if
#                        absent, and requirements.txt is pip-installed into it whenever it changed.
#   PYTHON               interpreter that creates the venv (default python3; 3.10 or newer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SDXL_REFERENCE_VENV:-${TMPDIR:-/tmp}/gameforge-sdxl-reference-venv}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
marker="$venv/.gameforge-sdxl-reference-requirements"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "venv.sh: creating $venv" >&2
    "$python" -m venv "$venv"
fi
if ! cmp -s "$requirements" "$marker"; then
    echo "venv.sh: installing $requirements into $venv" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements" >&2
    cp "$requirements" "$marker"
fi
echo "$venv"
