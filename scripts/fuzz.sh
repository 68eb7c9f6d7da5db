#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each: `scripts/fuzz.sh [SECONDS]` (default 20;
# `.ci/run` uses 15, `scripts/fuzz.sh 600` is the long run). One build serves all targets. Uses
# the stable toolchain with RUSTC_BOOTSTRAP=1 for libFuzzer's flags.
#
# FUZZ_SANITIZER=none (default) builds without a sanitizer: baton has no unsafe code of its own
# on these paths; FUZZ_SANITIZER=address for the thorough run. FUZZ_DEV=1 (what CI sets) builds
# the dev profile: half the build CPU of the optimised build, fewer runs per second. A crash stops the script with its input in fuzz/artifacts/<target>/; turn it into a
# regression test beside the code (`cargo fuzz fmt <target> <file>` prints it).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
sanitizer=${FUZZ_SANITIZER:-none}
flags=(--sanitizer "$sanitizer")
[ "${FUZZ_DEV:-0}" = 1 ] && flags+=(--dev)
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

echo "=== fuzz: build every target (${flags[*]})"
cargo fuzz build "${flags[@]}"
for target in $(cargo fuzz list); do
  echo "=== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  # The first directory collects new inputs (not committed); seeds/ is read only.
  log="target/fuzz-$target.log"
  if cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$log" || tail -1 "$log"
  else
    tail -40 "$log"
    echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
