#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each (default 20 s; `scripts/fuzz.sh 600` for a
# longer run). Uses the stable toolchain with RUSTC_BOOTSTRAP=1 for the sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "=== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 2>&1 | tail -4
done
