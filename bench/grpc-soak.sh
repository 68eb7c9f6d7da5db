#!/usr/bin/env bash
# bench/grpc-soak.sh: a bounded soak of streaming gRPC calls through the inbound sidecar
# (`app_protocol: http2`), sampling the sidecar's RSS every 10 s. For humans, NOT run by CI.
#
# A grpcio app (bench/grpc_soak.py serve) behind `baton run` inbound; a grpcio client
# (bench/grpc_soak.py load) alternates a server stream and a bidirectional stream, 50 messages of
# 16 KiB each way per call, one call at a time at RATE calls/s, for SECONDS, with one valid
# bearer token. Prints the RSS samples' first, last and max (KiB) and the calls' count; exits 1
# if a call failed. Sidecar on core 0, app and client on core 1 when the machine has 2+ cores.
#
# Usage:  bench/grpc-soak.sh                        # release build, 600 s at 5 calls/s
#         SECONDS_=60 RATE=2 SKIP_BUILD=1 bench/grpc-soak.sh
# Env:    SECONDS_ (600), RATE (5), BIN (target/release), IDP_BIN (target/debug/baton-idp),
#         PYTHON (.venv/bin/python, made by tests/interop/run.sh: grpcio), SKIP_BUILD,
#         OUT (bench/out/grpc-soak-<utc date>)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${SECONDS_:-600}
RATE=${RATE:-5}
BIN=${BIN:-target/release}
IDP_BIN=${IDP_BIN:-target/debug/baton-idp}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/out/grpc-soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "[grpc-soak] $*" >&2; }
die() { log "$*"; exit 1; }
"$PYTHON" -c 'import grpc' 2>/dev/null || die "no grpcio for $PYTHON: run tests/interop/run.sh once (it makes .venv)"
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --bin baton >&2
fi
for b in "$BIN/baton" "$IDP_BIN"; do [ -x "$b" ] || die "$b missing"; done

if [ "$(nproc)" -ge 2 ]; then SRV=(taskset -c 0); GEN=(taskset -c 1); else SRV=(); GEN=(); fi
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() { local name=$1; shift; "$@" >"$OUT/$name.log" 2>&1 & PIDS+=("$!"); }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() {
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "not ready: $1 (see $OUT/*.log)"
}
wait_port() {
    for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    die "not listening: $1"
}

IDP_PORT=$(port); APP_PORT=$(port); IN_PORT=$(port); OUT_PORT=$(port); ADMIN_PORT=$(port)
ISSUER=http://127.0.0.1:$IDP_PORT
mkdir -p "$OUT/idp"
# The one token must outlive the soak: access lifetime raised to the soak's length plus a margin.
LIFETIME=$((${SECONDS_%.*} + 600))
sed -e "s|^issuer: .*|issuer: $ISSUER|" -e "s|^listen: .*|listen: 127.0.0.1:$IDP_PORT|" \
    -e "s|^admin_listen: .*|admin_listen: 127.0.0.1:0|" -e "s|^\( *access:\) *300|\1 $LIFETIME|" \
    -e "s|^\( *dir:\) idp-keys|\1 $OUT/idp/keys|" deploy/idp.yaml >"$OUT/idp/idp.yaml"
start idp "$IDP_BIN" --allow-inline-secrets -c "$OUT/idp/idp.yaml"
wait_ok "$ISSUER/.well-known/openid-configuration"
TOKEN=$(curl -fsS -u service-a:demo-secret-service-a -d grant_type=client_credentials \
    -d audience=service-b "$ISSUER/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
[ -n "$TOKEN" ] || die "no token"

start app "${GEN[@]}" "$PYTHON" bench/grpc_soak.py serve "$APP_PORT"
wait_port "$APP_PORT"
cat >"$OUT/sidecar.yaml" <<YAML
issuer: $ISSUER
audience: service-b
listeners: {inbound: "127.0.0.1:$IN_PORT", outbound: "127.0.0.1:$OUT_PORT", admin: "127.0.0.1:$ADMIN_PORT"}
inbound: {app_protocol: http2}
app: "127.0.0.1:$APP_PORT"
routes:
  - {name: default, path: /}
YAML
RUST_LOG=warn start sidecar "${SRV[@]}" "$BIN/baton" run -c "$OUT/sidecar.yaml"
SIDECAR_PID=${PIDS[-1]}
wait_ok "http://127.0.0.1:$ADMIN_PORT/readyz"
log "soak: ${SECONDS_} s at $RATE calls/s through :$IN_PORT (sidecar pid $SIDECAR_PID, $(basename "$BIN") build); output in $OUT"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$SIDECAR_PID/status"; }
"${GEN[@]}" "$PYTHON" -u bench/grpc_soak.py load "$IN_PORT" "$TOKEN" "$SECONDS_" "$RATE" >"$OUT/load.log" 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
: >"$OUT/rss.tsv"
t=0
while kill -0 "$LOAD" 2>/dev/null; do
    echo -e "$t\t$(rss)" >>"$OUT/rss.tsv"
    sleep 10
    t=$((t + 10))
done
status=0
wait "$LOAD" || status=$?
echo -e "$t\t$(rss)" >>"$OUT/rss.tsv"
{
    echo "grpc soak $(date -u +%FT%TZ): ${SECONDS_} s, $RATE calls/s, $(basename "$BIN") build"
    tail -1 "$OUT/load.log"
    awk -F'\t' 'NR == 1 {first = $2} {last = $2; if ($2 > max) max = $2} END {
        printf "sidecar RSS (KiB, every 10 s, %d samples): first %d, last %d, max %d\n", NR, first, last, max}' "$OUT/rss.tsv"
} | tee "$OUT/results.md"
exit "$status"
