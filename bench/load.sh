#!/usr/bin/env bash
# bench/load.sh: the load harness. For humans, NOT run by CI; bounded, stops by itself.
#
# In ONE run on loopback it measures, with the same echo app (`baton-demo-app`, no next hop) behind
# every case and the same request in every case but the hop (the user's bearer token and an
# `x-baton-claims` header holding its claims, so the app decodes and echoes the same claims
# whether the sidecar put them there or the client did; the sidecar replaces the client's):
#   app     the app alone
#   nginx   the app behind nginx (Debian nginx-light, 1 worker) as a plain keep-alive reverse proxy
#   nginx2  two such nginx in series in front of the app: the like-for-like baseline of hop (two
#           proxies on the request's way); measured whenever hop is
#   bare    the app behind `bare-proxy` (examples/bare_proxy.rs): hyper's HTTP/1.1 server and the
#           sidecar's keep-alive pool, nothing else; the floor of baton's own stack
#   inbound the app behind `baton run` inbound, verifying a valid repeated user token
#   hop     the full hop: load generator as "A-app" plain client -> A-sidecar outbound (exchange
#           cached) -> B-sidecar inbound (verification cached) -> app
# For each case: one request at a time (-c 1, closed loop), fixed rates (RATES, default 2000 and
# 10000 req/s, latency-corrected), and a closed loop at CONCURRENCY for maximum throughput. Then the
# IdP alone: client-credentials grants/s and token exchanges/s with ES256 and with RS256 keys.
# With REPEAT=N every case and mode is measured N times in N interleaved rounds (all cases, then
# all cases again, every other round in reverse order so a steady drift favours no case), and the
# table gives the median of each figure and the spread over rounds: on a shared VM, minutes of
# drift would otherwise land on whichever case ran then. Below the table, each case's maximum is
# also given as a ratio to nginx's in the same round, round by round, with a sign test and a
# distribution-free 95 % interval for the median ratio, and the same for nginx's CPU time per
# request against the case's (which stolen time does not disturb). `MODES=max REPEAT=30
# DURATION=5s` asks that question alone, with enough rounds for the interval to mean something.
# Every measurement also records the share of the servers' core the hypervisor gave to someone
# else (steal, /proc/stat), summarised below the table: on a shared VM, a busy neighbour.
#
# Servers run on core 0 (`taskset -c 0`), the load generator on core 1 (`taskset -c 1`) when the
# machine has 2+ cores. The "hop" case drives A's outbound listener as an HTTP forward proxy
# (`oha --proxy`, absolute-form requests, like any HTTP_PROXY client); if this oha has no --proxy,
# it uses A's per-upstream local port instead (`outbound.ports`) and says so.
#
# Usage:  bench/load.sh                      # dist build (fat LTO), 10 s per measurement
#         REPEAT=3 bench/load.sh             # the README's figures: medians of 3 rounds
#         DURATION=3s SKIP_BUILD=1 BIN=target/debug bench/load.sh   # smoke test of the harness
# Env:    DURATION (10s), RATES ("2000 10000"), CONCURRENCY (64), BIN (target/dist: the `dist`
#         profile of Cargo.toml, as the images are built),
#         SKIP_BUILD (unset), SOAK (unset; seconds of hop at 2000 req/s with RSS sampled, e.g. 600),
#         OUT (bench/out/<utc date>): raw oha JSON, configs, logs, results.md,
#         CASES ("bare inbound hop"; app and nginx, the baselines, are always measured),
#         MODES ("one q<rate>... max": the modes measured, in that order; e.g. "max"),
#         IDP (1; 0 skips the IdP measurements), REPEAT (1),
#         BEFORE (unset; the path of another `baton` binary, e.g. one built before a change: adds
#         the case "before", the same inbound sidecar run by that binary, measured in the same
#         rounds, and the paired ratio of inbound's maximum against it: an A/B of a change),
#         TRACED (unset; 1 adds the case "traced", the inbound sidecar with OpenTelemetry on at
#         100 % sampling, exporting OTLP/HTTP to a sink that answers 200 (on the generator's
#         core), and the paired ratio of its maximum against inbound's, which runs untraced)
# Needs:  oha (`cargo install oha --locked`), nginx (installed with apt-get if missing), jq, curl.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
RATES=${RATES:-"2000 10000"}
CONCURRENCY=${CONCURRENCY:-64}
BIN=${BIN:-target/dist}
CASES="app nginx $(echo "${CASES:-bare inbound hop}" | tr ' ' '\n' | grep -vx -e app -e nginx -e nginx2 -e before -e '' | tr '\n' ' ')"
[[ " $CASES " == *" hop "* ]] && CASES+="nginx2 "
if [ -n "${BEFORE:-}" ]; then
    [ -x "$BEFORE" ] || { echo "load.sh: BEFORE=$BEFORE is not an executable" >&2; exit 1; }
    BEFORE=$(cd "$(dirname "$BEFORE")" && pwd)/$(basename "$BEFORE")
    CASES+="before "
fi
[ -n "${TRACED:-}" ] && CASES+="traced "
IDP=${IDP:-1}
REPEAT=${REPEAT:-1}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-bench/out/$STAMP}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
W=$(mktemp -d /tmp/baton-bench.XXXXXX)
PIDS=()

log() { printf '[load.sh %s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

# --- tools ------------------------------------------------------------------------------------
command -v oha >/dev/null || die "oha missing: cargo install oha --locked"
command -v jq >/dev/null || die "jq missing: apt-get install -y jq"
command -v curl >/dev/null || die "curl missing: apt-get install -y curl"
if ! command -v nginx >/dev/null; then
    log "installing nginx-light"
    apt-get install -y nginx-light >/dev/null || die "apt-get install nginx-light failed"
fi
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    SRV=(taskset -c 0) GEN=(taskset -c 1)
else
    SRV=() GEN=()
    log "fewer than 2 cores or no taskset: servers and load generator are not pinned"
fi
if [ -z "${SKIP_BUILD:-}" ]; then
    log "cargo build --profile dist --bins --example bare-proxy"
    cargo build --profile dist --bins --example bare-proxy >&2
fi
for b in baton baton-idp baton-demo-app examples/bare-proxy; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
BIN=$(cd "$BIN" && pwd)

# --- helpers ----------------------------------------------------------------------------------
# A free loopback TCP port: below the kernel's ephemeral range (so no outgoing connection holds
# it), not listening now, and not handed out before in this run.
TAKEN=" "
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
# free_port VAR...: sets each VAR to such a port.
free_port() {
    local p v
    for v in "$@"; do
        for _ in $(seq 1 200); do
            p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
            case $TAKEN in *" $p "*) continue ;; esac
            [ -z "$(ss -Hatn "sport = :$p")" ] && break
        done
        TAKEN+="$p "
        printf -v "$v" %s "$p"
    done
}

# start NAME CMD...: runs CMD on the server core, logs to $OUT/NAME.log, records its pid.
start() {
    local name=$1; shift
    "${SRV[@]}" "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=("$!")
    eval "PID_${name//-/_}=$!"
}

# wait_ok URL: polls (bounded, 20 s) until URL answers 2xx.
wait_ok() {
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "not ready: $1 (see $OUT/*.log)"
}

# CPU seconds "user system" and RSS in KiB of the processes given.
cpu_of() {
    local u=0 s=0 pid
    for pid in "$@"; do
        read -r pu ps < <(awk '{print $14, $15}' "/proc/$pid/stat")
        u=$((u + pu)) s=$((s + ps))
    done
    awk -v u="$u" -v s="$s" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.3f %.3f", u / hz, s / hz}'
}
# Ticks of core 0, the servers' core, from /proc/stat: "stolen total". Stolen time is time the
# hypervisor ran something else on the VM's core: a busy neighbour slows every case it lands on,
# though the processes' own CPU time does not count it.
core0_ticks() {
    awk '$1 == "cpu0" {t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t}' /proc/stat
}
rss_of() {
    local r=0 pid
    for pid in "$@"; do r=$((r + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status"))); done
    echo "$r"
}

# run CASE MODE OHA-ARGS...: one oha run, JSON kept in $OUT/CASE-MODE.json, prints
# "rps p50_us p99_us p999_us non2xx".
run_oha() {
    local case=$1 mode=$2; shift 2
    "${GEN[@]}" oha --no-tui --output-format json -z "$DURATION" "$@" >"$OUT/$case-$mode.json" 2>>"$OUT/oha.log" \
        || die "oha failed for $case $mode (see $OUT/oha.log)"
    jq -r '[.summary.requestsPerSec,
            (.latencyPercentiles.p50 // 0) * 1e6, (.latencyPercentiles.p99 // 0) * 1e6,
            (.latencyPercentiles["p99.9"] // 0) * 1e6,
            ([.statusCodeDistribution | to_entries[] | select(.key | test("^2") | not) | .value]
             | add // 0)] | map(tostring) | join(" ")' "$OUT/$case-$mode.json"
}

# --- IdP, token ---------------------------------------------------------------------------------
# deploy/idp.yaml with this run's port and keys, and 1 h access tokens so the run's token stays
# valid for the whole run (the sidecars cache verification and exchange until exp).
idp_config() { # PORT ALG DIR
    mkdir -p "$3"
    sed -e "s|^issuer: .*|issuer: http://127.0.0.1:$1|" -e "s|^listen: .*|listen: 127.0.0.1:$1|" \
        -e "s|^admin_listen: .*|admin_listen: 127.0.0.1:0|" -e "s|^\( *algorithm:\).*|\1 $2|" -e "s|^\( *access:\) *300|\1 3600|" \
        deploy/idp.yaml >"$3/idp.yaml"
}

user_token() { # ISSUER
    SA_SECRET=demo-secret-service-a ALICE_PW=wonderland-demo "$BIN/baton" login \
        --issuer "$1" --client-id service-a --client-secret-env SA_SECRET \
        --redirect-uri http://127.0.0.1:8080/callback --scope "openid profile" \
        --username alice --password-env ALICE_PW 2>>"$OUT/login.log" | jq -r .access_token
}

free_port IDP_PORT
ISSUER=http://127.0.0.1:$IDP_PORT
idp_config "$IDP_PORT" ES256 "$W/idp-es"
start idp "$BIN/baton-idp" --allow-inline-secrets -c "$W/idp-es/idp.yaml"
wait_ok "$ISSUER/.well-known/openid-configuration"
TOKEN=$(user_token "$ISSUER")
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || die "baton login gave no token (see $OUT/login.log)"
log "IdP on $ISSUER (ES256), user token obtained"

# --- app, nginx, sidecars -----------------------------------------------------------------------
free_port APP_PORT
start app "$BIN/baton-demo-app" --name app --listen "127.0.0.1:$APP_PORT"
wait_ok "http://127.0.0.1:$APP_PORT/"

free_port NGINX_PORT
mkdir -p "$W/nginx"
sed -e "s|@DIR@|$W/nginx|g" -e "s|@LISTEN@|127.0.0.1:$NGINX_PORT|" -e "s|@APP@|127.0.0.1:$APP_PORT|" \
    bench/nginx.conf >"$W/nginx/nginx.conf"
start nginx nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" -g "daemon off;"
wait_ok "http://127.0.0.1:$NGINX_PORT/"
# nginx2: a second nginx in front of the first, so two proxies stand between client and app.
free_port NGINX2_PORT
mkdir -p "$W/nginx2"
sed -e "s|@DIR@|$W/nginx2|g" -e "s|@LISTEN@|127.0.0.1:$NGINX2_PORT|" -e "s|@APP@|127.0.0.1:$NGINX_PORT|" \
    bench/nginx.conf >"$W/nginx2/nginx.conf"
start nginx2 nginx -p "$W/nginx2" -c "$W/nginx2/nginx.conf" -g "daemon off;"
wait_ok "http://127.0.0.1:$NGINX2_PORT/"

free_port A_IN A_OUT A_ADMIN A_PORT
free_port B_IN B_OUT B_ADMIN
sidecar_a_config() { # INBOUND OUTBOUND ADMIN PORT: sidecar A's config on those ports
    cat <<EOF
issuer: $ISSUER
audience: service-a
app: "127.0.0.1:$APP_PORT"
listeners: {inbound: "127.0.0.1:$1", outbound: "127.0.0.1:$2", admin: "127.0.0.1:$3"}
routes:
  - {name: default, path: /}
outbound:
  client: {client_id: service-a, secret: demo-secret-service-a}
  routes:
    - {name: service-b, host: "127.0.0.1:$B_IN", audience: service-b}
  ports:
    - {listen: "127.0.0.1:$4", upstream: "127.0.0.1:$B_IN", route: service-b}
EOF
}
sidecar_a_config "$A_IN" "$A_OUT" "$A_ADMIN" "$A_PORT" >"$W/sidecar-a.yaml"
cat >"$W/sidecar-b.yaml" <<EOF
issuer: $ISSUER
audience: service-b
app: "127.0.0.1:$APP_PORT"
listeners: {inbound: "127.0.0.1:$B_IN", outbound: "127.0.0.1:$B_OUT", admin: "127.0.0.1:$B_ADMIN"}
routes:
  - {name: default, path: /, claims: [{claim: grants, contains: service-b}]}
outbound:
  client: {client_id: service-b, secret: demo-secret-service-b}
EOF
cp "$W"/sidecar-*.yaml "$W/idp-es/idp.yaml" "$W/nginx/nginx.conf" "$OUT/"
RUST_LOG=${RUST_LOG:-warn} start sidecar-a "$BIN/baton" run -c "$W/sidecar-a.yaml"
RUST_LOG=${RUST_LOG:-warn} start sidecar-b "$BIN/baton" run -c "$W/sidecar-b.yaml"
wait_ok "http://127.0.0.1:$A_ADMIN/readyz"
wait_ok "http://127.0.0.1:$B_ADMIN/readyz"
if [ -n "${BEFORE:-}" ]; then
    free_port BEFORE_IN BEFORE_OUT BEFORE_ADMIN BEFORE_PORT
    sidecar_a_config "$BEFORE_IN" "$BEFORE_OUT" "$BEFORE_ADMIN" "$BEFORE_PORT" >"$W/sidecar-before.yaml"
    cp "$W/sidecar-before.yaml" "$OUT/"
    RUST_LOG=${RUST_LOG:-warn} start sidecar-before "$BEFORE" run -c "$W/sidecar-before.yaml"
    wait_ok "http://127.0.0.1:$BEFORE_ADMIN/readyz"
fi
if [ -n "${TRACED:-}" ]; then
    free_port TRACED_IN TRACED_OUT TRACED_ADMIN TRACED_PORT SINK_PORT
    # The collector: reads each export and answers 200, as an OTLP/HTTP receiver does.
    "${GEN[@]}" python3 -c '
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
' "$SINK_PORT" >"$OUT/sink.log" 2>&1 &
    PIDS+=("$!")
    {
        sidecar_a_config "$TRACED_IN" "$TRACED_OUT" "$TRACED_ADMIN" "$TRACED_PORT"
        echo "tracing: {endpoint: \"http://127.0.0.1:$SINK_PORT\", service_name: load-traced, sampler_ratio: 1.0}"
    } >"$W/sidecar-traced.yaml"
    cp "$W/sidecar-traced.yaml" "$OUT/"
    RUST_LOG=${RUST_LOG:-warn} start sidecar-traced "$BIN/baton" run -c "$W/sidecar-traced.yaml"
    wait_ok "http://127.0.0.1:$TRACED_ADMIN/readyz"
fi
free_port BARE_PORT
start bare "$BIN/examples/bare-proxy" "127.0.0.1:$BARE_PORT" "127.0.0.1:$APP_PORT"
wait_ok "http://127.0.0.1:$BARE_PORT/"

AUTH="Authorization: Bearer $TOKEN"
# The token's payload segment is base64url JSON of its claims: what the sidecar sends the app.
CLAIMS="x-baton-claims: $(cut -d. -f2 <<<"$TOKEN")"
if oha --help 2>&1 | grep -q -- '-x <PROXY>'; then
    HOP_ARGS=(-x "http://127.0.0.1:$A_OUT" -H "$AUTH" "http://127.0.0.1:$B_IN/")
    HOP_HOW="oha --proxy http://A-outbound (forward proxy, absolute-form)"
else
    HOP_ARGS=(-H "$AUTH" "http://127.0.0.1:$A_PORT/")
    HOP_HOW="A's per-upstream outbound port (this oha has no --proxy)"
fi
# Correctness gate and cache warm-up: every case must answer 200 before anything is timed.
for c in $CASES; do
    case $c in
        app) args=(-H "$AUTH" -H "$CLAIMS" "http://127.0.0.1:$APP_PORT/") ;;
        nginx) args=(-H "$AUTH" -H "$CLAIMS" "http://127.0.0.1:$NGINX_PORT/") ;;
        nginx2) args=(-H "$AUTH" -H "$CLAIMS" "http://127.0.0.1:$NGINX2_PORT/") ;;
        bare) args=(-H "$AUTH" -H "$CLAIMS" "http://127.0.0.1:$BARE_PORT/") ;;
        inbound) args=(-H "$AUTH" -H "$CLAIMS" "http://127.0.0.1:$A_IN/") ;;
        before) args=(-H "$AUTH" -H "$CLAIMS" "http://127.0.0.1:$BEFORE_IN/") ;;
        traced) args=(-H "$AUTH" -H "$CLAIMS" "http://127.0.0.1:$TRACED_IN/") ;;
        hop) args=("${HOP_ARGS[@]}") ;;
    esac
    eval "ARGS_$c=(\"\${args[@]}\")"
    "${GEN[@]}" oha --no-tui --output-format json -n 200 -c 4 "${args[@]}" >"$OUT/$c-warmup.json" 2>>"$OUT/oha.log"
    ok=$(jq -r '.statusCodeDistribution["200"] // 0' "$OUT/$c-warmup.json")
    [ "$ok" = 200 ] || die "$c: warm-up got $(jq -c .statusCodeDistribution "$OUT/$c-warmup.json"), want 200x200"
    # Equal work for the app: its answer (the echoed claims) must be the same size in every case.
    size=$(jq -r '.summary.sizePerRequest // 0' "$OUT/$c-warmup.json")
    [ "$c" = app ] && APP_SIZE=$size
    [ "$c" = hop ] || awk -v a="$size" -v b="$APP_SIZE" 'BEGIN {exit !(a >= 0.9 * b && a <= 1.1 * b)}' \
        || die "$c: the app answered $size bytes per request, $APP_SIZE when alone; the cases are not comparable"
done
log "every case answers 200; measuring ($DURATION each)"

# --- the measurements ---------------------------------------------------------------------------
declare -A R   # R[case,mode,round] = "rps p50 p99 p999 non2xx"
declare -A CPU # CPU[case,mode,round] = "user system" CPU seconds per request
declare -A RSS # RSS[case,mode] = KiB at the end of the mode in round 1
declare -A STEAL # STEAL[case,mode,round] = per cent of core 0's time stolen during the measurement
# One line: `read` stops at the first newline, so the rates are joined with spaces.
read -r -a MODES <<<"${MODES:-one $(printf 'q%s ' $RATES)max}"
for m in "${MODES[@]}"; do
    case $m in one | max | q[0-9]*) ;; *) die "unknown mode $m in MODES (one, qN, max)" ;; esac
done
for round in $(seq 1 "$REPEAT"); do
    order=$CASES
    [ $((round % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$CASES" | tac | tr '\n' ' ')
    for c in $order; do
        eval "args=(\"\${ARGS_$c[@]}\")"
        case $c in
            inbound) pids=("$PID_sidecar_a") ;;
            before) pids=("$PID_sidecar_before") ;;
            traced) pids=("$PID_sidecar_traced") ;;
            hop) pids=("$PID_sidecar_a" "$PID_sidecar_b") ;;
            nginx) pids=($(pgrep -P "$PID_nginx") "$PID_nginx") ;;
            nginx2) pids=($(pgrep -P "$PID_nginx") "$PID_nginx" $(pgrep -P "$PID_nginx2") "$PID_nginx2") ;;
            bare) pids=("$PID_bare") ;;
            *) pids=("$PID_app") ;;
        esac
        for m in "${MODES[@]}"; do
            case $m in
                one) extra=(-c 1) ;;
                max) extra=(-c "$CONCURRENCY") ;;
                q*) extra=(-c "$CONCURRENCY" -q "${m#q}" --latency-correction) ;;
            esac
            before=$(cpu_of "${pids[@]}") ticks0=$(core0_ticks)
            R[$c,$m,$round]=$(run_oha "$c" "$m-r$round" "${extra[@]}" "${args[@]}")
            after=$(cpu_of "${pids[@]}") ticks1=$(core0_ticks)
            STEAL[$c,$m,$round]=$(awk -v a="$ticks1" -v b="$ticks0" 'BEGIN {
                split(a, x, " "); split(b, y, " "); t = x[2] - y[2]
                printf "%.1f", (t > 0 ? 100 * (x[1] - y[1]) / t : 0)}')
            n=$(jq '[.statusCodeDistribution[]] | add // 0' "$OUT/$c-$m-r$round.json")
            CPU[$c,$m,$round]=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {
                split(a, x, " "); split(b, y, " "); if (!n) n = 1e308
                printf "%.9f %.9f", (x[1] - y[1]) / n, (x[2] - y[2]) / n}')
            # RSS of the first round, when the modes before it were only this case's lighter ones.
            [ "$round" = 1 ] && RSS[$c,$m]=$(rss_of "${pids[@]}")
            log "round $round/$REPEAT, $c $m: ${R[$c,$m,$round]} (rps p50 p99 p99.9 µs, non-2xx), $(awk -v c="${CPU[$c,$m,$round]}" 'BEGIN {
                split(c, x, " "); printf "CPU %.1f user + %.1f system µs/req", x[1] * 1e6, x[2] * 1e6}'), ${STEAL[$c,$m,$round]} % stolen"
        done
    done
done

# Over the rounds of CASE MODE: field I of R (of CPU with "cpu", of STEAL with "steal"), one value
# per line.
rounds() { # [cpu|steal] CASE MODE I
    local table=R
    [ "$1" = cpu ] && { table=CPU; shift; }
    [ "$1" = steal ] && { table=STEAL; shift; }
    local r v
    for r in $(seq 1 "$REPEAT"); do
        eval "v=\${$table[\$1,\$2,\$r]}"
        cut -d' ' -f"$3" <<<"$v"
    done
}
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
spread() { sort -g | awk '{a[NR] = $1} END {printf "%.0f–%.0f", a[1], a[NR]}'; }
sum() { awk '{s += $1} END {print s + 0}'; }
# ratio_stats WHAT, lines "a b" (one per round) on stdin, WHAT saying what a / b is: the per-round
# ratios, how many are at or above 1, the one-sided sign test's p (the chance of that many or
# more if a and b were equal), and the distribution-free 95 % interval of the median ratio: the order
# statistics k and n+1-k of the ratios, with k the largest that keeps P(Binomial(n, 1/2) < k)
# at or under 2.5 % (none under 6 rounds).
ratio_stats() {
    awk -v what="$1" '{r[NR] = $2 ? $1 / $2 : 0} END {
        n = NR; for (i = 1; i <= n; i++) { s = s sprintf("%s%.2f", i > 1 ? " " : "", r[i]); if (r[i] >= 1) ahead++ }
        for (i = 2; i <= n; i++) { v = r[i]; for (j = i - 1; j >= 1 && r[j] > v; j--) r[j + 1] = r[j]; r[j + 1] = v }
        med = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
        pmf = 0.5 ^ n; cdf = 0; p = 0; k = 0
        for (j = 0; j <= n; j++) {
            cdf += pmf; if (j >= ahead) p += pmf
            if (cdf <= 0.025) k = j + 1
            pmf = pmf * (n - j) / (j + 1)
        }
        ci = k ? sprintf("95 %% interval of the median %.2f–%.2f", r[k], r[n + 1 - k]) : "too few rounds for a 95 % interval"
        printf "%s in the same round: %s (median %.2f; %s; at or above 1 in %d of %d rounds, sign test p = %.3g).\n", what, s, med, ci, ahead, n, p
    }'
}

# --- optional soak: RSS of both sidecars over SOAK seconds of the hop at 2,000 req/s -------------
SOAK_LINE=
if [ -n "${SOAK:-}" ]; then
    log "soak: hop at 2000 req/s for ${SOAK}s, RSS sampled every 30 s"
    "${GEN[@]}" oha --no-tui --output-format json -z "${SOAK}s" -c "$CONCURRENCY" -q 2000 --latency-correction \
        "${ARGS_hop[@]}" >"$OUT/hop-soak.json" 2>>"$OUT/oha.log" &
    soak_pid=$!
    samples=()
    while kill -0 "$soak_pid" 2>/dev/null; do
        samples+=("$(awk -v k="$(rss_of "$PID_sidecar_a")" 'BEGIN {printf "%.1f", k / 1024}')/$(awk -v k="$(rss_of "$PID_sidecar_b")" 'BEGIN {printf "%.1f", k / 1024}')")
        for _ in $(seq 1 30); do kill -0 "$soak_pid" 2>/dev/null || break; sleep 1; done
    done
    wait "$soak_pid" || die "soak oha failed"
    SOAK_LINE="Soak, hop at 2000 req/s for ${SOAK}s: RSS MiB A/B every 30 s: ${samples[*]};"
    SOAK_LINE+=" $(jq -r '"p50 \(.latencyPercentiles.p50 * 1e6 | floor) µs, p99 \(.latencyPercentiles.p99 * 1e6 | floor) µs, status \(.statusCodeDistribution | tostring)"' "$OUT/hop-soak.json")"
fi

# --- the IdP under load -------------------------------------------------------------------------
TE=urn:ietf:params:oauth:grant-type:token-exchange
AT=urn:ietf:params:oauth:token-type:access_token
idp_load() { # ISSUER SUBJECT LABEL
    local tep
    tep=$(curl -fsS "$1/.well-known/openid-configuration" | jq -r .token_endpoint)
    declare -g "IDP_CC_$3=$(run_oha "idp-$3" cc -c "$CONCURRENCY" -m POST -a service-b:demo-secret-service-b \
        -T application/x-www-form-urlencoded -d "grant_type=client_credentials&audience=service-c" "$tep")"
    declare -g "IDP_TE_$3=$(run_oha "idp-$3" exchange -c "$CONCURRENCY" -m POST -a service-a:demo-secret-service-a \
        -T application/x-www-form-urlencoded \
        -d "grant_type=$TE&subject_token=$2&subject_token_type=$AT&audience=service-b" "$tep")"
}
if [ "$IDP" = 1 ]; then
    idp_load "$ISSUER" "$TOKEN" ES256
    free_port IDP_RS_PORT
    idp_config "$IDP_RS_PORT" RS256 "$W/idp-rs"
    start idp-rs "$BIN/baton-idp" --allow-inline-secrets -c "$W/idp-rs/idp.yaml"
    wait_ok "http://127.0.0.1:$IDP_RS_PORT/.well-known/openid-configuration"
    RS_TOKEN=$(user_token "http://127.0.0.1:$IDP_RS_PORT")
    idp_load "http://127.0.0.1:$IDP_RS_PORT" "$RS_TOKEN" RS256
fi

# --- the table ----------------------------------------------------------------------------------
us() { awk -v x="$1" 'BEGIN {printf "%.0f", x}'; }
{
    echo "## bench/load.sh, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
        "load average at start $(cut -d' ' -f1-3 /proc/loadavg). Servers on core 0, oha on core 1."
    echo "Command: \`REPEAT=$REPEAT MODES=\"${MODES[*]}\" DURATION=$DURATION RATES=\"$RATES\" CONCURRENCY=$CONCURRENCY BIN=$BIN bench/load.sh\`;" \
        "oha $(oha --version | awk '{print $2}'), nginx $(nginx -v 2>&1 | sed 's|.*/||'). Hop driven by $HOP_HOW."
    [ -n "${BEFORE:-}" ] && echo "Case before: the inbound sidecar run by $BEFORE (md5 $(md5sum <"$BEFORE" | cut -c1-12)); inbound: $BIN/baton (md5 $(md5sum <"$BIN/baton" | cut -c1-12))."
    echo
    [ "$REPEAT" -gt 1 ] && echo "Each figure is the median of $REPEAT interleaved rounds; the spread column gives the lowest and highest req/s and p50 of the rounds." && echo
    echo "| case | mode | req/s | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | req/s vs app | req/s vs nginx (hop: nginx2) | non-2xx | CPU ms/req (user+sys) | RSS MiB | spread: req/s; p50 µs |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for c in $CASES; do
        for m in "${MODES[@]}"; do
            rps=$(rounds "$c" "$m" 1 | median) p50=$(rounds "$c" "$m" 2 | median)
            p99=$(rounds "$c" "$m" 3 | median) p999=$(rounds "$c" "$m" 4 | median)
            bad=$(rounds "$c" "$m" 5 | sum)
            arps=$(rounds app "$m" 1 | median) ap50=$(rounds app "$m" 2 | median) ap99=$(rounds app "$m" 3 | median)
            nrps=$(rounds "$([ "$c" = hop ] && echo nginx2 || echo nginx)" "$m" 1 | median)
            cpu=$(awk -v u="$(rounds cpu "$c" "$m" 1 | median)" -v s="$(rounds cpu "$c" "$m" 2 | median)" \
                'BEGIN {printf "%.3f (%.3f+%.3f)", (u + s) * 1000, u * 1000, s * 1000}')
            range="$(rounds "$c" "$m" 1 | spread); $(rounds "$c" "$m" 2 | spread)"
            echo "| $c | $m | $(us "$rps") | $(us "$p50") | $(us "$p99") | $(us "$p999") |" \
                "$(us "$(awk -v a="$p50" -v b="$ap50" 'BEGIN {print a - b}')") |" \
                "$(us "$(awk -v a="$p99" -v b="$ap99" 'BEGIN {print a - b}')") |" \
                "$(awk -v a="$rps" -v b="$arps" 'BEGIN {printf "%.2f", b ? a / b : 0}') |" \
                "$(awk -v a="$rps" -v b="$nrps" 'BEGIN {printf "%.2f", b ? a / b : 0}') |" \
                "$bad | $cpu | $(awk -v k="${RSS[$c,$m]}" 'BEGIN {printf "%.1f", k / 1024}') | $range |"
        done
    done
    echo
    if [ "$REPEAT" -gt 1 ] && [[ " ${MODES[*]} " == *" max "* ]]; then
        # The medians above come from different rounds; the ratio within each round is what a
        # drifting VM leaves comparable.
        for c in $CASES; do
            # Each case against its like: the hop (two proxies) against two nginx in series,
            # every one-proxy case against one nginx.
            case $c in app | nginx | nginx2) continue ;; hop) base=nginx2 ;; *) base=nginx ;; esac
            paste -d' ' <(rounds "$c" max 1) <(rounds "$base" max 1) |
                ratio_stats "Max req/s of $c against $base's"
            # CPU time per request does not count stolen time: the comparison a busy neighbour
            # disturbs least. Inverted so that, as above, at or above 1 is in the case's favour.
            paste -d' ' \
                <(paste -d' ' <(rounds cpu "$base" max 1) <(rounds cpu "$base" max 2) | awk '{print $1 + $2}') \
                <(paste -d' ' <(rounds cpu "$c" max 1) <(rounds cpu "$c" max 2) | awk '{print $1 + $2}') |
                ratio_stats "CPU per request at max of $base against $c's"
        done
        if [ -n "${BEFORE:-}" ] && [[ " $CASES " == *" inbound "* ]]; then
            paste -d' ' <(rounds inbound max 1) <(rounds before max 1) |
                ratio_stats "Max req/s of inbound against before's"
        fi
        if [ -n "${TRACED:-}" ] && [[ " $CASES " == *" inbound "* ]]; then
            paste -d' ' <(rounds traced max 1) <(rounds inbound max 1) |
                ratio_stats "Max req/s of traced against inbound's"
            dropped=$(curl -fsS "http://127.0.0.1:$TRACED_ADMIN/metrics" | awk '/^baton_trace_spans_dropped_total/ {print $2}')
            echo "Spans the traced sidecar dropped (queue full or export failed), all rounds: ${dropped:-?}."
        fi
        echo
    fi
    echo "Stolen time on core 0 (the hypervisor running something else), per measurement:" \
        "median $(for c in $CASES; do for m in "${MODES[@]}"; do rounds steal "$c" "$m" 1; done; done | median) %," \
        "highest $(for c in $CASES; do for m in "${MODES[@]}"; do rounds steal "$c" "$m" 1; done; done | sort -g | tail -n 1) %;" \
        "every figure in $OUT/steal.txt."
    for c in $CASES; do for m in "${MODES[@]}"; do for r in $(seq 1 "$REPEAT"); do
        echo "$c $m round $r: ${STEAL[$c,$m,$r]} %"
    done; done; done >"$OUT/steal.txt"
    echo
    echo "Modes: one = closed loop, 1 connection (latency one request at a time); qN = fixed N req/s," \
        "$CONCURRENCY connections, latency-corrected; max = closed loop, $CONCURRENCY connections." \
        "CPU and RSS: inbound = A-sidecar; before = its twin run by BEFORE; traced = its twin with tracing on; hop = both sidecars; nginx = master + worker; nginx2 = both nginx; bare = bare-proxy; app = the app." \
        "The hop's like-for-like baseline is nginx2 (two proxies in series): its ratio below the table is against nginx2."
    [ -n "$SOAK_LINE" ] && { echo; echo "$SOAK_LINE"; }
    [ "$IDP" = 1 ] || exit 0
    echo
    echo "| IdP ($CONCURRENCY connections) | req/s | p50 µs | p99 µs | non-2xx |"
    echo "|---|---:|---:|---:|---:|"
    for alg in ES256 RS256; do
        for g in CC TE; do
            v="IDP_${g}_$alg"
            read -r rps p50 p99 _ bad <<<"${!v}"
            name=$([ $g = CC ] && echo "client_credentials" || echo "token exchange")
            echo "| $name, $alg | $(us "$rps") | $(us "$p50") | $(us "$p99") | $bad |"
        done
    done
} | tee "$OUT/results.md"
log "raw results in $OUT"
