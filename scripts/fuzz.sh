#!/usr/bin/env bash
# Runs each coverage-guided fuzz target (fuzz/fuzz_targets) for SECONDS (default 60) with
# cargo fuzz: the completion message parser (both formats and the push envelope), the
# config parser and validator, and the external processor's JSON Lines reader.
# A crash leaves its input in fuzz/artifacts/TARGET/ and fails the script; keep it as a
# regression test in the crate it found a bug in.
# cargo fuzz needs nightly features: on a stable toolchain RUSTC_BOOTSTRAP=1 allows them.
# Usage: scripts/fuzz.sh [SECONDS]     (CI runs `scripts/fuzz.sh 20` as a smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Its own target dir: the sanitizer build shares nothing with the workspace's.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
for target in completion_message config jsonl; do
  echo "== fuzz $target for ${SECONDS_EACH}s"
  mkdir -p "fuzz/corpus/$target"
  # The seed corpus in git stays as it is; what the run finds goes to a scratch copy.
  work="$(mktemp -d)"
  cp -r "fuzz/corpus/$target/." "$work/"
  cargo fuzz run --fuzz-dir fuzz "$target" "$work" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "^(#|==|Done|stat::number_of_executed_units|INFO: seed corpus|SUMMARY|thread|panicked|Test unit written|artifact_prefix)" | tail -n 8
  rm -rf "$work"
done
echo "fuzz: no crash in any target"
