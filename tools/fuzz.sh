#!/usr/bin/env bash
# Runs every fuzz target for a fixed time each: `tools/fuzz.sh [SECONDS]` (default 60). Needs the nightly toolchain
# (libFuzzer's instrumentation); installs cargo-fuzz from crates.io when missing. Seeds each target's corpus from
# the repository's samples; corpora and crash artefacts stay under fuzz/ (ignored by git). Exits non-zero when a
# target finds a crash, whose input is saved under fuzz/artifacts/<target>/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"
seconds="${1:-60}"

rustup run nightly rustc --version >/dev/null 2>&1 \
  || { echo "fuzz: the nightly toolchain is required (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

seed() {
  local target="$1"; shift
  mkdir -p "corpus/$target"
  for file in "$@"; do cp -n "$file" "corpus/$target/$(basename "$(dirname "$file")")-$(basename "$file")" 2>/dev/null || true; done
}
seed classify_event $(find "$root/events" -name '*.json' -not -path '*/expected/*' -not -path '*/function-url/*')
mkdir -p corpus/contract_messages
for example in "$root"/worker/tests/fixtures/reference/*.json "$root"/crates/contract/tests/fixtures/*.json; do
  [[ -f "$example" ]] && cp -n "$example" corpus/contract_messages/ 2>/dev/null || true
done
cat > corpus/contract_messages/job.json <<'JSON'
{"version": 1, "job_id": "sword-0042", "prompt": "a rusty sword, game icon", "negative_prompt": "blurry", "width": 1024,
 "height": 768, "steps": 30, "guidance": 5.0, "seed": 7, "scheduler": "euler_a", "model_id": "sdxl-base",
 "output": "s3://my-game-art/icons", "reply_to": "https://sqs.us-east-1.amazonaws.com/123456789012/results",
 "submitted_at": "2026-11-27T08:00:00Z", "deadline": "2026-11-27T09:00:00Z", "labels": {"asset": "sword-0042"}}
JSON

status=0
for target in $(cargo +nightly fuzz list); do
  echo "==> $target for ${seconds}s" >&2
  if ! cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 \
      2>"$target.log"; then
    status=1
    echo "fuzz: $target found a crash; see fuzz/$target.log and fuzz/artifacts/$target/" >&2
  fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^#[0-9]+.*DONE" "$target.log" >&2 || true
done
exit "$status"
