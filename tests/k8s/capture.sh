#!/usr/bin/env bash
# `baton init-net` for real, in two network namespaces this script makes and removes:
#
#   [client ns 10.78.0.1]  ──veth──  [pod ns 10.78.0.2: app :8080 (uid 1000), sidecar :15006/:15001 (uid 15532)]
#   service-b :80 (records Authorization), baton-idp :9000
#
# Shows: (1) a client reaches the app's port only through the inbound redirect to the sidecar;
# (2) the app's outbound TCP to a captured port lands on the sidecar's outbound listener, which
# learns the original destination (SO_ORIGINAL_DST); (3) the sidecar's own traffic (uid 15532) is
# not redirected, so it never loops, while an app running as 65532 (distroless `nonroot`) is;
# (4) loopback and the excluded IdP address are not redirected;
# (5) running init-net twice changes nothing; (6) IPv6 is captured the same way; (7) with the real
# sidecar and the real baton-idp: the app's PLAIN call (no proxy settings) carrying alice's token
# is exchanged: service-b receives a different token with aud service-b, sub alice, act.sub
# service-a, and never the original.
#
# Needs root, iproute2, iptables, curl, util-linux (setpriv), /usr/bin/python3 (app, service-b)
# and target/debug/baton-idp next to baton.
# Every wait is bounded; the trap removes the namespaces and processes on any exit.
#
# The sidecar is the real `baton run` (checks expect its answers: inbound 401 +
# `WWW-Authenticate: Bearer` without a token, outbound 403 for a destination no route names).
# SIDECAR=standin runs a Python stand-in instead that names the listener a connection reached and
# the original destination it read; it cannot exchange, so check (7) is skipped.
SIDECAR="${SIDECAR:-baton}"
set -euo pipefail
cd "$(dirname "$0")/../.."
BATON="${BATON:-target/debug/baton}"
IDP="${IDP:-$(dirname "$BATON")/baton-idp}"
PY=/usr/bin/python3
GRPC_PY="${GRPC_PY:-.venv/bin/python}"
GRPC_SITE=""
if [ "$SIDECAR" = baton ] && [ -x "$GRPC_PY" ]; then
  GRPC_SITE="$("$GRPC_PY" -c 'import grpc, os; print(os.path.dirname(os.path.dirname(grpc.__file__)))' 2>/dev/null || true)"
  [ -n "$GRPC_SITE" ] && PYTHONPATH="$GRPC_SITE" $PY -c 'import grpc, grpc_health.v1.health' 2>/dev/null || GRPC_SITE=""
fi
[ "$(id -u)" = 0 ] || { echo "capture.sh: needs root (network namespaces, iptables)"; exit 1; }
"$BATON" init-net --help >/dev/null 2>&1 || { echo "capture.sh: $BATON has no init-net subcommand"; exit 1; }
"$IDP" --help >/dev/null 2>&1 || { echo "capture.sh: no baton-idp at $IDP (cargo build --bins)"; exit 1; }

id="$$"
pod="baton-pod-$id"
cli="baton-cli-$id"
work="$(mktemp -d)"
chmod 755 "$work"
# /usr/bin/python3 with grpcio, for any uid: the venv's packages copied where every uid can read
# them (the checkout may sit in a directory only root can enter).
if [ -n "$GRPC_SITE" ]; then
  mkdir "$work/site"
  cp -r "$GRPC_SITE/grpc" "$GRPC_SITE/grpc_health" "$GRPC_SITE/google" \
    "$GRPC_SITE/typing_extensions.py" "$work/site/"
  chmod -R a+rX "$work/site"
  GRPC_SITE="$work/site"
fi
GRPC=(env "PYTHONPATH=$GRPC_SITE" $PY)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$pod" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
in_pod() { ip netns exec "$pod" "$@"; }
in_cli() { ip netns exec "$cli" "$@"; }
# Starts a server in namespace $1. `ip netns exec`, env and setpriv all exec, so the recorded pid
# is the server itself and the trap's kill reaches it (a backgrounded shell function would record
# a subshell whose child outlives it).
spawn() { local ns="$1"; shift; ip netns exec "$ns" "$@" & pids+=($!); }
APP=(setpriv --reuid 1000 --regid 1000 --clear-groups)          # the app's uid
PROXY=(setpriv --reuid 15532 --regid 15532 --clear-groups)      # the sidecar's uid
NONROOT=(setpriv --reuid 65532 --regid 65532 --clear-groups)    # distroless `nonroot`: an app like any other
# The client's curl, bounded; prints the body then the status code (headers too with -i).
cli_get() { in_cli curl -sS --max-time 5 -w '\n%{http_code}' "$@" 2>&1 || true; }

# --- two namespaces joined by a veth ---------------------------------------------------------
ip netns add "$pod"
ip netns add "$cli"
ip link add "bc$id" type veth peer name "bp$id"
ip link set "bc$id" netns "$cli"
ip link set "bp$id" netns "$pod"
in_cli ip addr add 10.78.0.1/24 dev "bc$id"
in_pod ip addr add 10.78.0.2/24 dev "bp$id"
in_cli ip addr add fd78::1/64 dev "bc$id" nodad
in_pod ip addr add fd78::2/64 dev "bp$id" nodad
for ns in "$pod" "$cli"; do ip -n "$ns" link set lo up; done
in_cli ip link set "bc$id" up
in_pod ip link set "bp$id" up

# --- servers ---------------------------------------------------------------------------------
mkdir -p "$work/app"
echo app-marker > "$work/app/index.html"
# The real IdP on the client side: deploy/idp.yaml with the issuer on the client's address and
# its keys in the temp dir (`keys.dir` is relative to the config file).
sed -e 's#^issuer: .*#issuer: http://10.78.0.1:9000#' -e 's#^listen: .*#listen: 10.78.0.1:9000#' \
  deploy/idp.yaml > "$work/idp.yaml"
grep -q '^issuer: http://10.78.0.1:9000$' "$work/idp.yaml" && grep -q '^listen: 10.78.0.1:9000$' "$work/idp.yaml" \
  || fail "deploy/idp.yaml no longer has top-level issuer:/listen: lines to rewrite"
echo demo-secret-service-a > "$work/secret-service-a"
# service-b: answers remote-marker and appends the Authorization header it got (or -) to a file.
cat > "$work/recorder.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[1], "a") as f:
            f.write((self.headers.get("Authorization") or "-") + "\n")
        data = b"remote-marker\n"
        self.send_response(200); self.send_header("content-length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("10.78.0.1", 80), H).serve_forever()
PY
# Checks what service-b received for the exchanged call: argv = record file, original token.
cat > "$work/check_token.py" <<'PY'
import base64, json, sys
record, original = open(sys.argv[1]).read(), sys.argv[2]
if original in record:
    sys.exit("service-b received the app's original token")
lines = record.splitlines()
if len(lines) != 1 or not lines[0].startswith("Bearer "):
    sys.exit(f"service-b should have received exactly one bearer token, got {len(lines)} request(s)")
token = lines[0][len("Bearer "):]
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
aud = claims.get("aud")
problems = []
if not (aud == "service-b" or (isinstance(aud, list) and "service-b" in aud)):
    problems.append(f"aud={aud!r}")
if claims.get("sub") != "alice":
    problems.append(f"sub={claims.get('sub')!r}")
if (claims.get("act") or {}).get("sub") != "service-a":
    problems.append(f"act={claims.get('act')!r}")
if problems:
    sys.exit("exchanged token has wrong claims: " + ", ".join(problems))
print(f"aud={aud} sub={claims['sub']} act.sub={claims['act']['sub']}")
PY
# The gRPC health server on the client side: SERVING, and each call's authorization (or -)
# appended to a file.
cat > "$work/health_server.py" <<'PY'
import sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
class Recording(health.HealthServicer):
    def Check(self, request, context):
        with open(sys.argv[1], "a") as f:
            f.write(dict(context.invocation_metadata()).get("authorization", "-") + "\n")
        return super().Check(request, context)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
servicer = Recording()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port("10.78.0.1:50051")
server.start()
server.wait_for_termination()
PY
# The app's gRPC health check, as any grpcio client writes it: argv = target, token or "-".
# Prints the status name, or the error code's name.
cat > "$work/health_check.py" <<'PY'
import sys
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
target, token = sys.argv[1], sys.argv[2]
md = [] if token == "-" else [("authorization", f"Bearer {token}")]
with grpc.insecure_channel(target) as ch:
    try:
        rsp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), metadata=md, timeout=10)
        print(health_pb2.HealthCheckResponse.ServingStatus.Name(rsp.status))
    except grpc.RpcError as e:
        print(e.code().name)
PY
cat > "$work/standin.py" <<'PY'
# Stand-in sidecar: answers which listener a connection reached and its original destination.
import http.server, socket, struct, sys, threading, urllib.request
def original_dst(sock):
    host = sock.getsockname()[0]
    try:
        if ":" in host and not host.startswith("::ffff:"):
            raw = sock.getsockopt(socket.IPPROTO_IPV6, 80, 28)  # IP6T_SO_ORIGINAL_DST
            return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{struct.unpack('!H', raw[2:4])[0]}"
        raw = sock.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
        port, ip = struct.unpack("!2xH4s8x", raw)
        return f"{socket.inet_ntoa(ip)}:{port}"
    except OSError:
        return "none"
class DualStack(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
def handler(name):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"baton-standin {name} orig={original_dst(self.connection)}"
            if name == "inbound":  # forward to the app on loopback, as the sidecar does
                body += " app=" + urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5).read().decode().strip()
            data = (body + "\n").encode()
            self.send_response(200); self.send_header("content-length", str(len(data))); self.end_headers()
            self.wfile.write(data)
        def log_message(self, *a): pass
    return H
servers = [DualStack(("::", p), handler(n)) for p, n in ((15006, "inbound"), (15001, "outbound"))]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
PY
# The pod is service-a: its outbound route exchanges alice's token for one addressed to service-b
# when the app calls 10.78.0.1 (port 80: curl's Host header says just `10.78.0.1`).
cat > "$work/sidecar.yaml" <<YAML
issuer: http://10.78.0.1:9000
audience: service-a
listeners: {inbound: "[::]:15006", outbound: "[::]:15001", admin: "127.0.0.1:15020"}
app: "127.0.0.1:8080"
routes:
  - {name: default, path: /}
outbound:
  client: {client_id: service-a, secret_file: $work/secret-service-a}
  routes:
    - {name: service-b, host: "10.78.0.1:80", audience: service-b}
    - {name: health, host: "10.78.0.1:50051", audience: service-b}
YAML
chmod -R a+rX "$work"
spawn "$cli" $PY "$work/recorder.py" "$work/service-b.auth" >/dev/null 2>&1
if [ -n "$GRPC_SITE" ]; then
  spawn "$cli" "${GRPC[@]}" "$work/health_server.py" "$work/health.auth" >"$work/health.log" 2>&1
fi
spawn "$cli" env -u SERVICE_A_SECRET -u SERVICE_B_SECRET "$(realpath "$IDP")" --allow-inline-secrets -c "$work/idp.yaml" >"$work/idp.log" 2>&1
spawn "$pod" "${APP[@]}" $PY -m http.server 8080 --bind :: --directory "$work/app" >/dev/null 2>&1
case "$SIDECAR" in
  standin) spawn "$pod" "${PROXY[@]}" $PY "$work/standin.py" >/dev/null 2>&1 ;;
  baton) spawn "$pod" "${PROXY[@]}" "$(realpath "$BATON")" run -c "$work/sidecar.yaml" >"$work/baton.log" 2>&1 ;;
  *) fail "SIDECAR must be standin or baton" ;;
esac

wait_port() { # ns ip port
  for _ in $(seq 1 100); do
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "nothing listening on $2:$3 in $1"
}
wait_port "$cli" 10.78.0.1 80
wait_port "$cli" 10.78.0.1 9000
[ -z "$GRPC_SITE" ] || wait_port "$cli" 10.78.0.1 50051
wait_port "$pod" 127.0.0.1 8080
wait_port "$pod" 127.0.0.1 15006
wait_port "$pod" 127.0.0.1 15001
if [ "$SIDECAR" = baton ]; then # ready = the IdP's keys are loaded
  for _ in $(seq 1 100); do
    in_pod curl -sf --max-time 2 http://127.0.0.1:15020/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  in_pod curl -sf --max-time 2 http://127.0.0.1:15020/readyz >/dev/null || fail "sidecar not ready: $(cat "$work/baton.log")"
fi

# --- before: the app's port is open to the client ---------------------------------------------
out="$(cli_get http://10.78.0.2:8080/)"
[[ "$out" == *app-marker* ]] || fail "before capture the client should reach the app directly: $out"
out="$(cli_get 'http://[fd78::2]:8080/')"
[[ "$out" == *app-marker* ]] || fail "before capture the client should reach the app over IPv6: $out"
ok "before init-net the client reaches the app directly (IPv4 and IPv6)"

# --- init-net ---------------------------------------------------------------------------------
in_pod "$BATON" init-net --inbound-ports 8080 --outbound-ports 80,9000,50051 --exclude 10.78.0.1:9000
before="$(in_pod iptables-save -t nat | grep -c BATON)/$(in_pod ip6tables-save -t nat | grep -c BATON)"
in_pod "$BATON" init-net --inbound-ports 8080 --outbound-ports 80,9000,50051 --exclude 10.78.0.1:9000
after="$(in_pod iptables-save -t nat | grep -c BATON)/$(in_pod ip6tables-save -t nat | grep -c BATON)"
[ "$before" = "$after" ] || fail "a second init-net changed the rules ($before → $after lines)"
ok "init-net installed the rules; a second run changed nothing ($after BATON lines in iptables/ip6tables)"

inbound_by_sidecar() {
  case "$SIDECAR" in
    standin) [[ "$1" == *"baton-standin inbound orig=10.78.0.2:8080 app=app-marker"* ]] ;;
    baton) [[ "$1" == *"www-authenticate: bearer"* && "$1" == *401 ]] ;;
  esac
}
outbound_by_sidecar() { # output, original destination
  case "$SIDECAR" in
    standin) [[ "$1" == *"baton-standin outbound orig=$2"* ]] ;;
    baton) [[ "$1" == *403 ]] ;;
  esac
}

# (1) inbound: the client's connection to the app's port is answered by the sidecar.
if [ "$SIDECAR" = baton ]; then
  out="$(cli_get -i http://10.78.0.2:8080/ | tr -d '\r' | tr 'A-Z' 'a-z')"
else
  out="$(cli_get http://10.78.0.2:8080/)"
fi
inbound_by_sidecar "$out" || fail "client → 10.78.0.2:8080 was not redirected to the sidecar: $out"
[[ "$out" != app-marker* ]] || fail "client reached the app without the sidecar"
ok "client → app port 8080 is redirected to the sidecar's inbound 15006 (which reaches the app on loopback)"

# (2) outbound: the app's call to a captured port reaches the outbound listener. With baton the
# request names a host no route has (Host header), so the sidecar answers 403 itself.
if [ "$SIDECAR" = baton ]; then
  out="$(in_pod "${APP[@]}" curl -sS --max-time 5 -w '\n%{http_code}' -H 'Host: unrouted.example' http://10.78.0.1:80/ 2>&1 || true)"
else
  out="$(in_pod "${APP[@]}" curl -sS --max-time 5 -w '\n%{http_code}' http://10.78.0.1:80/ 2>&1 || true)"
fi
outbound_by_sidecar "$out" 10.78.0.1:80 || fail "app → 10.78.0.1:80 was not redirected to 15001: $out"
[ ! -s "$work/service-b.auth" ] || fail "an unrouted captured call reached service-b: $(wc -l < "$work/service-b.auth") request(s)"
ok "app → 10.78.0.1:80 is redirected to the outbound listener, original destination recovered"

# (2b) IPv6: the same redirects, so a dual-stack pod cannot be bypassed over IPv6.
out="$(cli_get 'http://[fd78::2]:8080/')"
[[ "$out" != app-marker* ]] || fail "client reached the app over IPv6 without the sidecar: $out"
if [ "$SIDECAR" = standin ]; then
  [[ "$out" == *"baton-standin inbound orig=[fd78::2]:8080"* ]] || fail "IPv6 inbound not redirected: $out"
  out="$(in_pod "${APP[@]}" curl -sS --max-time 5 'http://[fd78::1]:80/' 2>&1 || true)"
  [[ "$out" == *"baton-standin outbound orig=[fd78::1]:80"* ]] || fail "IPv6 outbound not redirected: $out"
else
  [[ "$out" == *401 ]] || fail "IPv6 client → [fd78::2]:8080 should get the sidecar's 401: $out"
  out="$(in_pod "${APP[@]}" curl -sS --max-time 5 -w '\n%{http_code}' 'http://[fd78::1]:80/' 2>&1 || true)"
  [[ "$out" == *403 ]] || fail "IPv6 app → [fd78::1]:80 (no route) should get the sidecar's 403: $out"
fi
ok "IPv6: inbound and outbound are captured the same way"

# (3) the sidecar's own uid is not redirected: no loop.
out="$(in_pod "${PROXY[@]}" curl -sS --max-time 5 http://10.78.0.1:80/ 2>&1 || true)"
[[ "$out" == remote-marker* ]] || fail "sidecar uid 15532 → 10.78.0.1:80 should reach the remote directly: $out"
ok "traffic of the sidecar's uid 15532 goes out unredirected"

# (3b) an app running as distroless's default `nonroot` uid 65532 is captured like any other.
if [ "$SIDECAR" = baton ]; then
  out="$(in_pod "${NONROOT[@]}" curl -sS --max-time 5 -w '\n%{http_code}' -H 'Host: unrouted.example' http://10.78.0.1:80/ 2>&1 || true)"
else
  out="$(in_pod "${NONROOT[@]}" curl -sS --max-time 5 -w '\n%{http_code}' http://10.78.0.1:80/ 2>&1 || true)"
fi
outbound_by_sidecar "$out" 10.78.0.1:80 || fail "uid 65532 (distroless nonroot) → 10.78.0.1:80 escaped capture: $out"
ok "an app running as uid 65532 (distroless nonroot) is captured"

# (4) loopback and the IdP exemption.
out="$(in_pod "${APP[@]}" curl -sS --max-time 5 http://127.0.0.1:8080/ 2>&1 || true)"
[[ "$out" == app-marker* ]] || fail "loopback 127.0.0.1:8080 should not be redirected: $out"
out="$(in_pod "${APP[@]}" curl -sS --max-time 5 http://10.78.0.1:9000/.well-known/openid-configuration 2>&1 || true)"
[[ "$out" == *'"issuer":"http://10.78.0.1:9000"'* ]] || fail "the excluded IdP 10.78.0.1:9000 should not be redirected: $out"
ok "loopback and the excluded IdP address go out unredirected"

# (7) the app's plain outbound call is exchanged (real sidecar and real IdP only).
if [ "$SIDECAR" = baton ]; then
  # alice signs in to service-a the way a browser would (code + PKCE), where the IdP is reachable.
  login="$(in_cli env PW=wonderland-demo "$BATON" login --issuer http://10.78.0.1:9000 \
    --client-id service-a --client-secret-file "$work/secret-service-a" \
    --redirect-uri http://127.0.0.1:8080/callback --scope 'openid profile' \
    --username alice --password-env PW)" || fail "baton login failed: $(tail -5 "$work/idp.log")"
  token="$($PY -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$login")"
  [ -n "$token" ] || fail "baton login printed no access_token"
  : > "$work/service-b.auth"
  out="$(in_pod "${APP[@]}" env -u http_proxy -u HTTP_PROXY -u all_proxy -u ALL_PROXY \
    curl -sS --max-time 10 -w '\n%{http_code}' -H "Authorization: Bearer $token" http://10.78.0.1:80/ 2>&1 || true)"
  [[ "$out" == remote-marker*200 ]] || fail "app → service-b with alice's token should succeed: $out $(tail -5 "$work/baton.log")"
  claims="$($PY "$work/check_token.py" "$work/service-b.auth" "$token")" || fail "exchange not proven (see above)"
  ok "the app's plain call with alice's token was exchanged on the way out: service-b got $claims"

  # (8) gRPC through capture: the HTTP/2 preface on the redirected connection.
  if [ -n "$GRPC_SITE" ]; then
    : > "$work/health.auth"
    out="$(in_pod "${APP[@]}" env -u http_proxy -u HTTP_PROXY -u all_proxy -u ALL_PROXY -u grpc_proxy \
      timeout 20 "${GRPC[@]}" "$work/health_check.py" 10.78.0.1:50051 "$token" 2>&1 || true)"
    [ "$out" = SERVING ] || fail "app's gRPC health check through capture: $out $(tail -5 "$work/baton.log")"
    claims="$($PY "$work/check_token.py" "$work/health.auth" "$token")" || fail "gRPC exchange not proven (see above)"
    out="$(in_pod "${APP[@]}" env -u http_proxy -u HTTP_PROXY -u all_proxy -u ALL_PROXY -u grpc_proxy \
      timeout 20 "${GRPC[@]}" "$work/health_check.py" 10.78.0.1:50051 - 2>&1 || true)"
    [ "$out" = UNAUTHENTICATED ] || fail "app's gRPC call without a token through capture: $out"
    [ "$(wc -l < "$work/health.auth")" = 1 ] || fail "the call without a token reached the health server"
    ok "gRPC through capture: the app's health check is SERVING with an exchanged token ($claims); without a token UNAUTHENTICATED, nothing sent"
  else
    echo "skipped (8) gRPC through capture: no grpcio for $PY (GRPC_PY; tests/interop/run.sh makes .venv)"
  fi
fi

echo "capture.sh: all checks passed (sidecar: $SIDECAR)"
