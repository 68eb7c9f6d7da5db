#!/usr/bin/env bash
# bench/callgrind.sh: instruction-count regression guard. Bounded (a few runs of a
# few hundred requests under valgrind), stops by itself, needs no network.
#
# For each scenario of examples/callgrind.rs (the `callgrind` example, release build) it runs
# `valgrind --tool=callgrind` twice, with N1 and N2 requests, and reports
#     instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1)
# so start-up (key generation, runtime, config) cancels out. It compares each figure with
# bench/callgrind-budget.txt and fails when one exceeds its budget by more than MARGIN percent.
#
# Usage:  bench/callgrind.sh                 # build, measure, compare
#         UPDATE=1 bench/callgrind.sh        # measure and rewrite the budget file
# Env:    N1 (20), N2 (220), MARGIN (10), SCENARIOS (all of the budget file), SKIP_BUILD,
#         BIN (target/release/examples/callgrind)
# Needs:  valgrind (apt-get install valgrind).
set -euo pipefail

cd "$(dirname "$0")/.."
N1=${N1:-20}
N2=${N2:-220}
MARGIN=${MARGIN:-10}
BUDGET=bench/callgrind-budget.txt
BIN=${BIN:-target/release/examples/callgrind}
SCENARIOS=${SCENARIOS:-"app inbound serve exchange-hit idp-cc idp-exchange"}

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind missing (apt-get install valgrind)" >&2; exit 1; }
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --example callgrind >&2
fi

# instructions SCENARIO N: total instructions of one run (every thread).
instructions() {
    local log
    log=$(mktemp)
    if ! valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$2" 2>"$log"; then
        cat "$log" >&2
        rm -f "$log"
        echo "callgrind.sh: $1 $2 failed" >&2
        return 1
    fi
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log"
    rm -f "$log"
}

budget_of() { [ -f "$BUDGET" ] && awk -v s="$1" '$1 == s { print $2 }' "$BUDGET" || true; }

fail=0
declare -A measured
printf '%-14s %14s %14s %8s\n' scenario "instr/request" budget verdict
for s in $SCENARIOS; do
    a=$(instructions "$s" "$N1")
    b=$(instructions "$s" "$N2")
    per=$(((b - a) / (N2 - N1)))
    measured[$s]=$per
    budget=$(budget_of "$s")
    if [ -z "$budget" ]; then
        verdict="no budget"
    elif [ "$per" -gt $((budget + budget * MARGIN / 100)) ]; then
        verdict="OVER"
        fail=1
    else
        verdict="ok"
    fi
    printf '%-14s %14d %14s %8s\n' "$s" "$per" "${budget:--}" "$verdict"
done

if [ -n "${UPDATE:-}" ]; then
    {
        echo "# Instructions per request (bench/callgrind.sh; release build, valgrind callgrind)."
        echo "# The guard fails when a figure exceeds its budget by more than MARGIN (10) percent."
        for s in $SCENARIOS; do echo "$s ${measured[$s]}"; done
    } >"$BUDGET"
    echo "callgrind.sh: wrote $BUDGET" >&2
    exit 0
fi
if [ "$fail" -ne 0 ]; then
    echo "callgrind.sh: instruction budget exceeded by more than $MARGIN% (see above)" >&2
    exit 1
fi
