#!/usr/bin/env bash
# Creates or refreshes a virtual environment of the repository: by default .venv with tools/requirements.txt;
# `ensure-venv.sh NAME` makes .venv-NAME with tools/requirements-NAME.txt (checkov pins an old boto3, so it lives
# apart). The default venv also gets Node.js (from PyPI) and, with it, the IAM policy evaluator's npm packages
# (tools/iam-sim, pinned by its package-lock.json). Idempotent and safe to run from several processes at once
# (tests start in parallel): the work happens under a lock, and a marker records what is installed, so a later
# run costs one comparison.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv${1:+-$1}"
requirements="$root/tools/requirements${1:+-$1}.txt"
marker="$venv/.gameforge-requirements"
wanted="$(mktemp)"
trap 'rm -f "$wanted"' EXIT
cat "$requirements" > "$wanted"
[[ -z "${1:-}" ]] && cat "$root/tools/iam-sim/package-lock.json" >> "$wanted"

installed() {
  [[ -x "$venv/bin/python" ]] && cmp -s "$wanted" "$marker" \
    && { [[ -n "${1:-}" ]] || [[ -d "$root/tools/iam-sim/node_modules/@cloud-copilot/iam-simulate" ]]; }
}

installed "$@" && exit 0
mkdir -p "$venv"
exec 9>"$venv.lock"
flock 9
installed "$@" && exit 0
echo "ensure-venv: installing $(grep -cv '^#' "$requirements") Python tools into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
if [[ -z "${1:-}" ]]; then
  echo "ensure-venv: installing the IAM policy evaluator (tools/iam-sim)" >&2
  (cd "$root/tools/iam-sim" && PATH="$venv/bin:$PATH" npm ci --no-audit --no-fund --loglevel=error >&2)
fi
cp "$wanted" "$marker"
