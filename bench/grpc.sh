#!/usr/bin/env bash
# bench/grpc.sh: unary gRPC-shaped calls through the inbound sidecar (`app_protocol: http2`)
# against nginx's grpc_pass, in one run on loopback. For humans, NOT run by CI; bounded.
#
# Cases, each in front of the same h2c app (examples/grpc_app.rs: reads the call, answers one
# message and `grpc-status: 0`):
#   app      the app alone
#   nginx    the app behind nginx (Debian nginx-light, 1 worker, `listen ... http2` h2c,
#            `grpc_pass` with upstream keepalive): a plain gRPC reverse proxy
#   inbound  the app behind `baton run` inbound, verifying a valid repeated bearer token
# Every request carries the same headers (content-type application/grpc, te: trailers, the
# token). Load: h2load (Debian nghttp2-client), after 2000 calls of warm-up: ONE_N calls one at a
# time on one connection (-c1 -m1), then MAX_N calls at the maximum (-c CONNS -m STREAMS).
# Latency percentiles from h2load's per-request log. (h2load's timed mode, -D, paced one call at
# a time far below what the app answers here, so call counts are used.)
# Servers on core 0, h2load on core 1 when the machine has 2+ cores.
#
# Usage:  bench/grpc.sh                         # release build, 10 s per measurement
#         ONE_N=2000 MAX_N=20000 SKIP_BUILD=1 bench/grpc.sh
# Env:    ONE_N (20000), MAX_N (200000), CONNS (4), STREAMS (16), BIN (target/release), IDP_BIN
#         (target/debug/baton-idp: issues the one token and serves the JWKS, off the hot path),
#         SKIP_BUILD, OUT (bench/out/grpc-<utc date>)
# Needs:  nginx-light and nghttp2-client (apt-get install -y nginx-light nghttp2-client), curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
ONE_N=${ONE_N:-20000}
MAX_N=${MAX_N:-200000}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-16}
BIN=${BIN:-target/release}
IDP_BIN=${IDP_BIN:-target/debug/baton-idp}
OUT=${OUT:-bench/out/grpc-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "[grpc-bench] $*" >&2; }
die() { log "$*"; exit 1; }
command -v h2load >/dev/null || die "h2load missing: apt-get install -y nghttp2-client"
command -v nginx >/dev/null || die "nginx missing: apt-get install -y nginx-light"
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --bin baton --example grpc-app >&2
fi
APP_BIN=$BIN/examples/grpc-app
for b in "$BIN/baton" "$APP_BIN" "$IDP_BIN"; do [ -x "$b" ] || die "$b missing"; done

if [ "$(nproc)" -ge 2 ]; then SRV=(taskset -c 0); GEN=(taskset -c 1); else SRV=(); GEN=(); fi
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() { local name=$1; shift; "${SRV[@]}" "$@" >"$OUT/$name.log" 2>&1 & PIDS+=("$!"); }
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

IDP_PORT=$(port); APP_PORT=$(port); NGINX_PORT=$(port); IN_PORT=$(port); OUT_PORT=$(port); ADMIN_PORT=$(port)
ISSUER=http://127.0.0.1:$IDP_PORT
mkdir -p "$OUT/idp"
sed -e "s|^issuer: .*|issuer: $ISSUER|" -e "s|^listen: .*|listen: 127.0.0.1:$IDP_PORT|" \
    -e "s|^admin_listen: .*|admin_listen: 127.0.0.1:0|" -e "s|^\( *access:\) *300|\1 3600|" \
    -e "s|^\( *dir:\) idp-keys|\1 $OUT/idp/keys|" deploy/idp.yaml >"$OUT/idp/idp.yaml"
start idp "$IDP_BIN" --allow-inline-secrets -c "$OUT/idp/idp.yaml"
wait_ok "$ISSUER/.well-known/openid-configuration"
TOKEN=$(curl -fsS -u service-a:demo-secret-service-a -d grant_type=client_credentials \
    -d audience=service-b "$ISSUER/token" | jq -r .access_token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || die "no token"

start app "$APP_BIN" "127.0.0.1:$APP_PORT"
wait_port "$APP_PORT"

cat >"$OUT/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT http2;
        keepalive_requests 100000000;
        location / { grpc_pass grpc://app; }
    }
}
NGINX
start nginx nginx -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log"
wait_port "$NGINX_PORT"

cat >"$OUT/sidecar.yaml" <<YAML
issuer: $ISSUER
audience: service-b
listeners: {inbound: "127.0.0.1:$IN_PORT", outbound: "127.0.0.1:$OUT_PORT", admin: "127.0.0.1:$ADMIN_PORT"}
inbound: {app_protocol: http2}
app: "127.0.0.1:$APP_PORT"
routes:
  - {name: default, path: /}
YAML
RUST_LOG=warn start inbound "$BIN/baton" run -c "$OUT/sidecar.yaml"
wait_ok "http://127.0.0.1:$ADMIN_PORT/readyz"
log "app :$APP_PORT, nginx :$NGINX_PORT, baton inbound :$IN_PORT; token obtained"

printf '\0\0\0\0\x05hello' >"$OUT/request.bin"
# run CASE MODE PORT H2LOAD-ARGS...: prints "rps p50_us p99_us failed".
run() {
    local case=$1 mode=$2 p=$3; shift 3
    rm -f "$OUT/$case-$mode.tsv"
    "${GEN[@]}" h2load -d "$OUT/request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $TOKEN" \
        --log-file="$OUT/$case-$mode.tsv" "$@" "http://127.0.0.1:$p/bench.Svc/Call" \
        >"$OUT/$case-$mode.txt" 2>&1 || die "h2load failed: $case $mode (see $OUT/$case-$mode.txt)"
    local rps failed
    rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$OUT/$case-$mode.txt")
    failed=$(awk '/^requests:/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) print $i}' "$OUT/$case-$mode.txt")
    read -r p50 p99 < <(cut -f3 "$OUT/$case-$mode.tsv" | sort -n | awk '{v[NR] = $1} END {
        a = int(NR * 0.5); b = int(NR * 0.99); if (a < 1) a = 1; if (b < 1) b = 1
        printf "%d %d\n", v[a], v[b]}')
    echo "$rps $p50 $p99 ${failed:-0}"
}

declare -A R
for case in app nginx inbound; do
    case $case in app) p=$APP_PORT ;; nginx) p=$NGINX_PORT ;; inbound) p=$IN_PORT ;; esac
    run "$case" warm "$p" -n 2000 -c 1 -m 1 >/dev/null
    R[$case-one]=$(run "$case" one "$p" -n "$ONE_N" -c 1 -m 1)
    R[$case-max]=$(run "$case" max "$p" -n "$MAX_N" -c "$CONNS" -m "$STREAMS")
    log "$case: one ${R[$case-one]} | max ${R[$case-max]}"
done
RSS=$(awk '/^VmHWM/ {print $2}' "/proc/$(pgrep -f "baton run -c $OUT/sidecar.yaml" | head -1)/status")

{
    echo "grpc bench $(date -u +%FT%TZ), $ONE_N calls one at a time, $MAX_N at the maximum, $(basename "$BIN") build, h2load $(h2load --version | awk '{print $2}'), $(nginx -v 2>&1 | sed 's/.*: //')"
    echo
    echo "| case | one at a time: req/s | p50 µs | p99 µs | max (-c $CONNS -m $STREAMS): req/s | p50 µs | p99 µs | failed |"
    echo "|---|---|---|---|---|---|---|---|"
    for case in app nginx inbound; do
        read -r r1 a1 b1 f1 <<<"${R[$case-one]}"
        read -r r2 a2 b2 f2 <<<"${R[$case-max]}"
        echo "| $case | $r1 | $a1 | $b1 | $r2 | $a2 | $b2 | $((f1 + f2)) |"
    done
    read -r n1 na _ _ <<<"${R[nginx-one]}"; read -r i1 ia _ _ <<<"${R[inbound-one]}"; read -r a1 aa _ _ <<<"${R[app-one]}"
    read -r n2 _ _ _ <<<"${R[nginx-max]}"; read -r i2 _ _ _ <<<"${R[inbound-max]}"
    echo
    echo "inbound / nginx, max req/s: $(awk -v a="$i2" -v b="$n2" 'BEGIN {printf "%.2f", a / b}'); one at a time: $(awk -v a="$i1" -v b="$n1" 'BEGIN {printf "%.2f", a / b}')"
    echo "added p50 one at a time over the app alone: inbound $((ia - aa)) µs, nginx $((na - aa)) µs"
    echo "baton peak RSS after the run: ${RSS:-?} KiB"
} | tee "$OUT/results.md"
