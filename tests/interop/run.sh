#!/usr/bin/env bash
# Interop suite: third-party OAuth/JWT libraries from PyPI (authlib, PyJWT, jwcrypto) drive the
# real baton binaries on loopback. Creates its own venv; needs `cargo build --bins` first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${BATON_VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
export BATON_BIN_DIR=${BATON_BIN_DIR:-$root/target/debug}
cd "$here"
# Process logs stay under target/test-logs/interop for the whole-suite log audit.
export RUST_LOG=${RUST_LOG:-baton=trace,info}
mkdir -p "$root/target/test-logs"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider --basetemp "$root/target/test-logs/interop" "$@"
