#!/usr/bin/env bash
# The project's test command (README): Rust unit and end-to-end tests, the interop suite against
# third-party OAuth/JWT libraries, a real browser, the Kubernetes checks, then the docker-compose
# chain when Docker is here.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every log of the run is kept in target/test-logs/ and audited for tokens and secrets at the
# end (scripts/log-audit.sh): the tests print baton's own logs at trace level for it.
rm -rf target/test-logs
mkdir -p target/test-logs
export RUST_LOG=${RUST_LOG:-baton=trace,info}

echo "=== cargo test (unit, e2e, doc)"
cargo build --locked --bins
# The full output, logs included, goes to target/test-logs/cargo-test.log; the summary lines here.
set +e
RUST_TEST_NOCAPTURE=1 cargo test --locked --all-targets 2>&1 | tee target/test-logs/cargo-test.log \
  | grep --line-buffered -E '^(test result|running [0-9]|error|failures:|---- |thread .* panicked)'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || { echo "--- last lines of target/test-logs/cargo-test.log"; tail -200 target/test-logs/cargo-test.log; exit "$rc"; }
cargo test --locked --doc

echo "=== interop: authlib, PyJWT, jwcrypto against baton"
tests/interop/run.sh

echo "=== browser: headless Chromium signs in and steps up through the login pages"
tests/browser/run.sh

echo "=== kubernetes: manifests, inject output, capture in network namespaces"
tests/k8s/run.sh

# Opt-in (needs a release build and valgrind): instructions per request against
# bench/callgrind-budget.txt, failing above +10 %.
if [ -n "${BATON_CALLGRIND:-}" ]; then
  echo "=== callgrind: instruction budget of the hot paths"
  bench/callgrind.sh
fi

echo "=== log audit: no token or secret in any log of this run"
scripts/log-audit.sh

if [ -x deploy/compose/test.sh ]; then
  echo "=== docker-compose chain"
  deploy/compose/test.sh
fi
