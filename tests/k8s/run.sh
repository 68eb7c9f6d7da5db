#!/usr/bin/env bash
# The Kubernetes checks that need more than `cargo test`: strict schema validation of every
# manifest and inject output (validate.sh), and the capture rules in real network namespaces
# (capture.sh, root only). Builds `baton` and `baton-idp` first. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked --bin baton --bin baton-idp
tests/k8s/validate.sh
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v iptables-restore >/dev/null; then
  tests/k8s/capture.sh
else
  echo "tests/k8s/capture.sh skipped: needs root, iproute2 and iptables"
fi
