#!/usr/bin/env bash
# The README's local invocation, checked as a user would run it: the local system in the background,
# `cargo lambda watch` for each function with the environment (and role) the runner wrote for it, and
# `cargo lambda invoke --data-file` on samples.
# Everything started here is stopped on exit, whatever happens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
scratch="${CARGO_TARGET_DIR:-$root/target}/localaws"
mkdir -p "$scratch"
rm -f "$scratch/on-signal.env" "$scratch/submit.env"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

target/debug/gameforge-local serve >"$scratch/smoke-local.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$scratch/submit.env" ]] && grep -q serving "$scratch/smoke-local.log" && break; sleep 0.2; done
grep -q serving "$scratch/smoke-local.log" || { cat "$scratch/smoke-local.log" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A ports
for function in on-signal submit; do
  ports[$function]=$(free_port)
  cargo lambda watch -p "$function" --invoke-port "${ports[$function]}" --env-file "$scratch/$function.env" \
    >"$scratch/smoke-watch-$function.log" 2>&1 &
  pids+=($!)
done

invoke() {
  local out
  for _ in $(seq 60); do
    if out=$(cargo lambda invoke "$1" --invoke-port "${ports[$1]}" --data-file "$2" 2>&1); then echo "$out"; return 0; fi
    sleep 2
  done
  echo "$out" >&2; tail -20 "$scratch/smoke-watch-$1.log" >&2; return 1
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
