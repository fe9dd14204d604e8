#!/usr/bin/env bash
# Creates or refreshes a virtual environment of the repository: by default .venv with tools/requirements.txt;
# `ensure-venv.sh NAME` makes .venv-NAME with tools/requirements-NAME.txt (checkov pins an old boto3, so it lives
# apart). Idempotent and safe to run from several processes at once (tests start in parallel): the work happens
# under a lock, and a marker records which requirements are installed, so a later run costs one comparison.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv${1:+-$1}"
requirements="$root/tools/requirements${1:+-$1}.txt"
marker="$venv/.gameforge-requirements"

installed() { [[ -x "$venv/bin/python" ]] && cmp -s "$requirements" "$marker"; }

installed && exit 0
mkdir -p "$venv"
exec 9>"$venv.lock"
flock 9
installed && exit 0
echo "ensure-venv: installing $(grep -cv '^#' "$requirements") Python tools into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
cp "$requirements" "$marker"
