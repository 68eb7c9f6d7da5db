#!/usr/bin/env bash
# baton-idp's grants per second with the memory store (one replica) and the postgres store (one
# and three replicas), on this machine, over loopback: session sign-ins (code + PKCE through an
# existing login session), refresh grants, token exchanges of a user token, client-credentials
# grants (bench/idp_store.rs). Starts a throwaway PostgreSQL cluster (Debian's postgresql; as
# nobody under root). Release profile.
# Knobs: SECONDS_EACH (default 10), CONC (16).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_EACH:-10}
conc=${CONC:-16}
cargo build --release --quiet --bin baton-idp --example idp_store
bin=target/release
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
work=$(mktemp -d)
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown 65534:65534 "$work/pg"
pgport=$((20000 + RANDOM % 10000))
(cd "$work/pg" && as_pg "$pgbin/initdb" -D "$work/pg/data" -U baton --auth=trust --no-sync >/dev/null)
(cd "$work/pg" && as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $pgport -c listen_addresses=127.0.0.1 -k $work/pg" start >/dev/null)
echo "postgres://baton@127.0.0.1:$pgport/postgres" >"$work/db-url"
head -c 32 /dev/urandom | base64 >"$work/kek"

# start NAME PORT STORE: a replica with deploy/idp.yaml, issuer = the first replica.
start() {
  local name=$1 port=$2 store=$3 issuer=$4
  sed -e "s|issuer: http://127.0.0.1:9000|issuer: $issuer|" -e "s|listen: 127.0.0.1:9000|listen: 127.0.0.1:$port|" \
      -e "s|admin_listen: 127.0.0.1:9001|admin_listen: 127.0.0.1:0|" -e "s|dir: idp-keys|dir: $work/keys-$name|" \
      deploy/idp.yaml >"$work/$name.yaml"
  printf '%s' "$store" >>"$work/$name.yaml"
  env -u SERVICE_A_SECRET -u SERVICE_B_SECRET RUST_LOG=warn "$bin/baton-idp" --allow-inline-secrets \
    -c "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  cat "$work/$name.log"; exit 1
}
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
pg_store=$(printf '\nstore:\n  kind: postgres\n  url_file: %s\n  key_encryption_key_file: %s\n' "$work/db-url" "$work/kek")

p=$((30000 + RANDOM % 10000))
echo "== memory store, 1 replica (${secs}s each, $conc concurrent)"
start mem $p "" "http://127.0.0.1:$p"
"$bin/examples/idp_store" "$secs" "$conc" "http://127.0.0.1:$p"
stop_all
echo "== postgres store, 1 replica"
start pg1 $((p+1)) "$pg_store" "http://127.0.0.1:$((p+1))"
"$bin/examples/idp_store" "$secs" "$conc" "http://127.0.0.1:$((p+1))"
echo "== postgres store, 3 replicas (requests round the replicas)"
start pg2 $((p+2)) "$pg_store" "http://127.0.0.1:$((p+1))"
start pg3 $((p+3)) "$pg_store" "http://127.0.0.1:$((p+1))"
"$bin/examples/idp_store" "$secs" "$conc" "http://127.0.0.1:$((p+1)),http://127.0.0.1:$((p+2)),http://127.0.0.1:$((p+3))"
stop_all
