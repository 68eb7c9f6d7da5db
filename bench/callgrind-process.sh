#!/usr/bin/env bash
# bench/callgrind-process.sh: instructions per request of the WHOLE `baton run` process,
# inbound only: accept loop, hyper server, `inbound::handle`, the pooled client to the app, the
# tokio runtime; everything bench/callgrind.sh's in-process scenarios leave out. For humans, NOT
# run by CI; bounded (two runs of N1/N2 requests), stops by itself, loopback only.
#
# It starts baton-idp and baton-demo-app (release, core 1), signs alice in with `baton login`,
# then twice runs `baton run` (inbound → the app, config like bench/load.sh's sidecar A) under
# `valgrind --tool=callgrind` pinned to core 0 (one tokio worker, as in bench/load.sh), sends N1
# resp. N2 requests with the same token with oha (CONC connections), stops it with SIGTERM, and
#     instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1)
# so start-up and shutdown cancel. WHAT=app measures baton-demo-app alone the same way, WHAT=bare
# the bare hyper proxy of examples/bare_proxy.rs in front of the app (the floor of baton's stack),
# WHAT=nginx Debian's nginx as bench/load.sh runs it, in one process (user-space instructions
# only, as for every WHAT: the kernel's share of a request, where nginx makes more system calls
# than the sidecar, is not counted),
# WHAT=outbound the same `baton run` as the app's outbound forward proxy (oha --proxy): route
# lookup, the exchanged token from the cache (one exchange at the IdP, then hits), the header
# rewrite and the keep-alive connection to the app, which stands in for the next hop.
# The callgrind files stay in the printed directory for `callgrind_annotate --inclusive=yes`, beside
# functions.tsv, the instructions per request of each function (bench/callgrind-functions.py).
#
# Usage:  bench/callgrind-process.sh            # after cargo build --profile dist --bins --examples
# Env:    WHAT (sidecar|outbound|app|bare|nginx), N1 (200), N2 (1200), CONC (1), BIN (target/dist)
# Needs:  valgrind, oha, jq, curl, python3 (free ports), taskset.
set -euo pipefail

cd "$(dirname "$0")/.."
WHAT=${WHAT:-sidecar} N1=${N1:-200} N2=${N2:-1200} CONC=${CONC:-1}
BIN=$(cd "${BIN:-target/dist}" && pwd)
W=$(mktemp -d /tmp/baton-cgproc.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ok() { # URL: polls (bounded, 60 s: valgrind starts slowly) until it answers 2xx
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "callgrind-process.sh: not ready: $1 (see $W)" >&2
    exit 1
}

IDP=$(port) APP=$(port)
mkdir -p "$W/idp"
sed -e "s|^issuer: .*|issuer: http://127.0.0.1:$IDP|" -e "s|^listen: .*|listen: 127.0.0.1:$IDP|" \
    -e "s|^admin_listen: .*|admin_listen: 127.0.0.1:0|" -e "s|^\( *access:\) *300|\1 3600|" deploy/idp.yaml >"$W/idp/idp.yaml"
taskset -c 1 "$BIN/baton-idp" --allow-inline-secrets -c "$W/idp/idp.yaml" >"$W/idp.log" 2>&1 &
PIDS+=($!)
taskset -c 1 "$BIN/baton-demo-app" --name app --listen "127.0.0.1:$APP" >"$W/app.log" 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$IDP/.well-known/openid-configuration"
TOKEN=$(SA_SECRET=demo-secret-service-a ALICE_PW=wonderland-demo "$BIN/baton" login \
    --issuer "http://127.0.0.1:$IDP" --client-id service-a --client-secret-env SA_SECRET \
    --redirect-uri http://127.0.0.1:8080/callback --scope "openid profile" \
    --username alice --password-env ALICE_PW 2>"$W/login.log" | jq -r .access_token)

run() { # N: total instructions of one run of N requests
    local n=$1 in out adm pid
    in=$(port) out=$(port) adm=$(port)
    cat >"$W/sidecar.yaml" <<Y
issuer: http://127.0.0.1:$IDP
audience: service-a
app: "127.0.0.1:$APP"
listeners: {inbound: "127.0.0.1:$in", outbound: "127.0.0.1:$out", admin: "127.0.0.1:$adm"}
routes:
  - {name: default, path: /}
outbound:
  client: {client_id: service-a, secret: demo-secret-service-a}
  routes:
    - {name: service-b, host: "127.0.0.1:$APP", audience: service-b}
Y
    local cg=(taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.$n")
    local target=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$in/")
    if [ "$WHAT" = outbound ]; then
        target=(-x "http://127.0.0.1:$out" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$APP/")
    fi
    if [ "$WHAT" = sidecar ] || [ "$WHAT" = outbound ]; then
        RUST_LOG=warn "${cg[@]}" "$BIN/baton" run -c "$W/sidecar.yaml" >"$W/run.$n.log" 2>&1 &
        pid=$!
        wait_ok "http://127.0.0.1:$adm/readyz"
    elif [ "$WHAT" = nginx ]; then
        # One process (no master): the worker's instructions are the process's. bench/load.sh's
        # config otherwise.
        mkdir -p "$W/nginx.$n"
        sed -e "s|@DIR@|$W/nginx.$n|g" -e "s|@LISTEN@|127.0.0.1:$in|" -e "s|@APP@|127.0.0.1:$APP|" \
            bench/nginx.conf >"$W/nginx.$n/nginx.conf"
        "${cg[@]}" nginx -p "$W/nginx.$n" -c "$W/nginx.$n/nginx.conf" -g "daemon off; master_process off;" \
            >"$W/run.$n.log" 2>&1 &
        pid=$!
        wait_ok "http://127.0.0.1:$in/"
    elif [ "$WHAT" = bare ]; then
        "${cg[@]}" "$BIN/examples/bare-proxy" "127.0.0.1:$in" "127.0.0.1:$APP" >"$W/run.$n.log" 2>&1 &
        pid=$!
        wait_ok "http://127.0.0.1:$in/"
    else
        "${cg[@]}" "$BIN/baton-demo-app" --name measured --listen "127.0.0.1:$in" >"$W/run.$n.log" 2>&1 &
        pid=$!
        wait_ok "http://127.0.0.1:$in/"
    fi
    taskset -c 1 oha --no-tui --output-format json -n "$n" -c "$CONC" "${target[@]}" >"$W/oha.$n.json"
    ok=$(jq -r '.statusCodeDistribution["200"] // 0' "$W/oha.$n.json")
    [ "$ok" = "$n" ] || { echo "callgrind-process.sh: $ok of $n answered 200 (see $W)" >&2; exit 1; }
    kill -TERM "$pid"
    wait "$pid" || true
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$W/run.$n.log"
}
a=$(run "$N1")
b=$(run "$N2")
echo "$WHAT, $CONC connection(s): ($b - $a) / ($N2 - $N1) = $(((b - a) / (N2 - N1))) instructions/request"
echo "callgrind files: $W"
if command -v python3 >/dev/null && command -v callgrind_annotate >/dev/null; then
    bench/callgrind-functions.py table "$W" "$N1" "$N2" >"$W/functions.tsv"
    echo "per function: $W/functions.tsv (compare two runs: bench/callgrind-functions.py diff A B)"
fi
