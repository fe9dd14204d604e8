#!/usr/bin/env bash
# The README's local invocation, checked as a user would run it: the local system in the background,
# `cargo lambda watch` with the environment the runner wrote, and `cargo lambda invoke --data-file` on samples.
# Everything started here is stopped on exit, whatever happens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
scratch="${CARGO_TARGET_DIR:-$root/target}/localaws"
mkdir -p "$scratch"
env_file="$scratch/lambda.env"
rm -f "$env_file"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

target/debug/gameforge-local serve >"$scratch/smoke-local.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$env_file" ]] && grep -q serving "$scratch/smoke-local.log" && break; sleep 0.2; done
grep -q serving "$scratch/smoke-local.log" || { cat "$scratch/smoke-local.log" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cargo lambda watch --invoke-port "$port" --env-file "$env_file" >"$scratch/smoke-watch.log" 2>&1 &
pids+=($!)

invoke() {
  local out
  for _ in $(seq 60); do
    if out=$(cargo lambda invoke "$1" --invoke-port "$port" --data-file "$2" 2>&1); then echo "$out"; return 0; fi
    sleep 2
  done
  echo "$out" >&2; tail -20 "$scratch/smoke-watch.log" >&2; return 1
}

direct=$(invoke on-signal events/ec2/spot-interruption-warning-terminate.json)
echo "direct event: $direct"
grep -q '"outcome":"emitted"' <<<"$direct"
batch=$(invoke on-signal events/sqs/batch-with-malformed-record.json)
echo "SQS batch:    $batch"
grep -q '"batchItemFailures":\[\]' <<<"$batch"
submitted=$(invoke submit events/function-url/submit-job.json)
echo "submit:       $submitted"
grep -q '"statusCode":202' <<<"$submitted"
echo "cargo lambda invoke: ok"
