#!/usr/bin/env bash
# End-to-end test of the compose chain, run by scripts/test.sh when Docker is here.
# Builds the image under a throwaway tag, starts the stack as a unique project, signs users in
# through the real login form, calls A→B→C from the host, stops and restarts the IdP, checks the
# logs for leaked tokens, then removes everything it created, even when a step fails.
#
#   deploy/compose/test.sh                        # build + test (`dist` build of the binaries)
#   BATON_TEST_IMAGE=baton:dev deploy/compose/test.sh   # test an existing image, keep it
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# --- preconditions: no Docker is a reason to skip, not a failure -----------------------------
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "compose test skipped: docker is not installed or its daemon is not reachable"
  exit 0
fi
if ! compose_cmd; then
  echo "compose test skipped: neither 'docker compose' nor 'docker-compose' is installed"
  exit 0
fi
missing=()
for tool in jq curl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "need ${missing[*]} and there is no apt-get"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PROJECT="batontest$(date +%s)$$"
WORK="$(mktemp -d)"
built_image=""
if [ -n "${BATON_TEST_IMAGE:-}" ]; then
  BATON_IMAGE="$BATON_TEST_IMAGE"
else
  BATON_IMAGE="baton:$PROJECT"
fi
export BATON_IMAGE
# Publish A and the IdP on free host ports so the test never collides with a running demo.
export BATON_A_PUBLISH=127.0.0.1: BATON_IDP_PUBLISH=127.0.0.1:

# --- teardown, whatever happened ---------------------------------------------------------------
cleanup() {
  local rc=$? left
  set +e
  if [ "$rc" -ne 0 ]; then
    log "FAILED (exit $rc); last log lines of $PROJECT:"
    compose "$PROJECT" logs --no-color --tail=30 >&2
  fi
  log "tearing down $PROJECT"
  compose "$PROJECT" down -v --remove-orphans --timeout 10 >/dev/null 2>&1
  [ -n "$built_image" ] && docker rmi -f "$built_image" >/dev/null 2>&1
  rm -rf "$WORK"
  left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
  left+="$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  left+="$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  if [ -n "$left" ]; then
    log "error: $PROJECT left containers, networks or volumes behind: $left"
    rc=1
  elif [ "$rc" -eq 0 ]; then
    log "PASS: compose chain; nothing of $PROJECT remains"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -------------------------------------------------------------------------------------
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%T)"; }
ok() { log "ok: $*"; }

# check FILE JQ_EXPR DESCRIPTION: the JSON in FILE satisfies the jq expression.
check() {
  jq -e "$2" "$1" >/dev/null || { jq . "$1" >&2 || cat "$1" >&2; die "$3 ($2)"; }
  ok "$3"
}

# login USER: signs USER in at service-a through the IdP's login form (code + PKCE), from inside
# the compose network where http://idp:9000 resolves; stores the token response in $WORK/USER.json
# and remembers every token in it for the log check.
login() {
  local user="$1" out="$WORK/$1.json"
  compose "$PROJECT" run --rm --no-deps -T cli login \
    --issuer http://idp:9000 --client-id service-a \
    --client-secret-file /run/secrets/service-a.secret \
    --redirect-uri http://127.0.0.1:8080/callback \
    --username "$user" --password-file "/run/secrets/$user.password" \
    >"$out" 2>"$WORK/login.err" || { cat "$WORK/login.err" >&2; die "sign-in of $user failed"; }
  jq -e '.access_token | type == "string"' "$out" >/dev/null \
    || { cat "$WORK/login.err" >&2; die "sign-in of $user: no access_token in the answer"; }
  jq -r '.access_token, .id_token // empty, .refresh_token // empty' "$out" >>"$WORK/tokens"
  ok "$user signed in"
}

token_of() { jq -r .access_token "$WORK/$1.json"; }

# call_a USER NAME: GET / on A with USER's access token; body in $WORK/NAME.json, headers in
# $WORK/NAME.headers; prints the status code.
call_a() {
  curl -sS --max-time 20 -o "$WORK/$2.json" -D "$WORK/$2.headers" -w '%{http_code}' \
    -H "Authorization: Bearer $(token_of "$1")" "http://$A_ADDR/" || true
}

# expect_chain FILE USER: C's answer, nested in A's, proves the whole chain for USER.
expect_chain() {
  local f="$1" c='.next.next.claims'
  check "$f" '.service == "service-a" and .next.service == "service-b" and .next.next.service == "service-c"' \
    "A answered with B's answer, which carries C's"
  check "$f" "$c.grants == [\"service-a\",\"service-b\",\"service-c\"]" "C's token grants [service-a, service-b, service-c]"
  check "$f" "$c.account_id == \"$(account_of "$2")\"" "C's token keeps $2's account_id"
  check "$f" "$c.sub == .claims.sub and ($c.sub | type == \"string\")" "C's token keeps the user's sub"
  check "$f" "$c.act.sub == \"service-b\" and $c.act.act.sub == \"service-a\"" "C's token records the act chain service-b ← service-a"
  check "$f" "[$c.aud] | flatten | index(\"service-c\") != null" "C's token is addressed to service-c"
  check "$f" '.next.claims.grants == ["service-a","service-b"] and .next.claims.act.sub == "service-a"' \
    "B's token grants [service-a, service-b], act service-a"
}
account_of() { case "$1" in alice) echo acct-1001 ;; bob) echo acct-1002 ;; esac; }

# retry_chain USER NAME SECONDS: the IdP just came back; a sidecar that saw it unreachable fails
# fast for a few seconds (its Retry-After) before it tries again. Retries until the whole chain
# answers, bounded.
retry_chain() {
  local deadline=$((SECONDS + $3)) code
  while :; do
    code="$(call_a "$1" "$2")"
    if [ "$code" = 200 ] && jq -e '.next.next.service == "service-c"' "$WORK/$2.json" >/dev/null 2>&1; then
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/$2.json" >&2; die "$1's call still fails ($code) after $3s"; }
    sleep 1
  done
}

jwks_kids() {
  local jwks_uri
  jwks_uri="$(curl -sS --max-time 10 "http://$IDP_ADDR/.well-known/openid-configuration" | jq -r .jwks_uri)"
  curl -sS --max-time 10 "http://$IDP_ADDR/${jwks_uri#http://idp:9000/}" | jq -c '[.keys[].kid] | sort'
}

# --- the test ------------------------------------------------------------------------------------
step "build $BATON_IMAGE"
if [ -z "${BATON_TEST_IMAGE:-}" ]; then
  built_image="$BATON_IMAGE"
  "$COMPOSE_DIR/build.sh"
fi
docker run --rm "$BATON_IMAGE" /baton --version

step "start $PROJECT"
ensure_secrets
compose "$PROJECT" up -d
wait_healthy "$PROJECT" 120
A_ADDR="$(compose "$PROJECT" port sidecar-a 8080)"
IDP_ADDR="$(compose "$PROJECT" port idp 9000)"
ok "A on $A_ADDR, IdP on $IDP_ADDR"
kids_before="$(jwks_kids)"
ok "IdP publishes keys $kids_before"

step "from another container only the sidecars' inbound ports and the IdP answer"
probe() { docker run --rm --network "${PROJECT}_chain" "$BATON_IMAGE" /baton probe "$1" >/dev/null 2>&1; }
probe http://idp:9000/.well-known/openid-configuration || die "cli cannot reach the IdP"
for svc in service-a service-b service-c; do
  probe "http://$svc:8080/" && die "GET http://$svc:8080/ without a token answered 2xx"
  for port in 8081 15001 15020; do
    probe "http://$svc:$port/healthz" && die "$svc:$port is reachable from another container"
  done
done
ok "apps, outbound proxies and admin listeners are loopback-only"

step "no token: A's sidecar answers 401 with a Bearer challenge"
code="$(curl -sS --max-time 20 -o /dev/null -D "$WORK/anon.headers" -w '%{http_code}' "http://$A_ADDR/")"
[ "$code" = 401 ] || die "call without a token answered $code, expected 401"
grep -qi '^www-authenticate: *bearer' "$WORK/anon.headers" || die "401 without WWW-Authenticate: Bearer"
ok "401 with WWW-Authenticate: Bearer"

step "alice signs in and calls A → B → C"
login alice
code="$(call_a alice alice1)"
[ "$code" = 200 ] || { cat "$WORK/alice1.json" >&2; die "alice's call answered $code"; }
expect_chain "$WORK/alice1.json" alice
jq '.next.next.claims' "$WORK/alice1.json"

step "bob signs in; then the IdP stops"
login bob
compose "$PROJECT" stop idp
ok "IdP stopped"

step "IdP down: alice's repeat call is served from the caches, bob's new exchange gets 503"
code="$(call_a alice alice2)"
[ "$code" = 200 ] || { cat "$WORK/alice2.json" >&2; die "alice's cached call answered $code with the IdP down"; }
expect_chain "$WORK/alice2.json" alice
code="$(call_a bob bob1)"
# A's sidecar answers app-a's call 503 + Retry-After (no cached token, IdP unreachable). The demo
# app reports a refused next hop inside its 200 answer as next.{status, retry_after}; an app that
# passes the status on instead answers 503 itself. Either way the user sees 503 and Retry-After.
if [ "$code" = 503 ]; then
  grep -qi '^retry-after: *[0-9]' "$WORK/bob1.headers" || die "503 without Retry-After"
elif [ "$code" = 200 ]; then
  check "$WORK/bob1.json" '.next.status == 503 and (.next.retry_after | tostring | test("^[0-9]+$"))' \
    "A reports its sidecar's 503 with Retry-After for bob's call"
else
  cat "$WORK/bob1.json" >&2
  die "bob's call answered $code with the IdP down, expected A to report a 503"
fi
ok "bob: 503 with Retry-After"

step "IdP restarts with its keys from the volume"
compose "$PROJECT" start idp
wait_healthy "$PROJECT" 60
# A restarted container gets a new ephemeral host port.
IDP_ADDR="$(compose "$PROJECT" port idp 9000)"
kids_after="$(jwks_kids)"
[ "$kids_after" = "$kids_before" ] || die "keys changed across the restart: $kids_before → $kids_after"
ok "same keys after the restart: $kids_after"
# bob's token was signed before the restart and was never exchanged: the IdP now verifies it as
# an exchange subject, which only works with the persisted key.
retry_chain bob bob2 30
expect_chain "$WORK/bob2.json" bob
code="$(call_a alice alice3)"
[ "$code" = 200 ] || die "alice's old token answered $code after the restart"
expect_chain "$WORK/alice3.json" alice
ok "tokens issued before the restart still work"
login alice
code="$(call_a alice alice4)"
[ "$code" = 200 ] || { cat "$WORK/alice4.json" >&2; die "a new sign-in's call answered $code"; }
expect_chain "$WORK/alice4.json" alice

step "no token, secret or password in the logs"
compose "$PROJECT" logs --no-color >"$WORK/logs.txt" 2>&1
[ -s "$WORK/logs.txt" ] || die "no logs collected"
leaks=0
while IFS= read -r t; do
  [ -n "$t" ] || continue
  # The whole token, and for JWTs the signature alone (a truncated token is still a leak).
  if grep -qF -- "$t" "$WORK/logs.txt" || grep -qF -- "${t##*.}" "$WORK/logs.txt"; then
    log "a token seen by the test (sha256 $(printf %s "$t" | sha256sum | cut -c1-8)) is in the logs"
    leaks=$((leaks + 1))
  fi
done < <(sort -u "$WORK/tokens"; for f in "$COMPOSE_DIR"/secrets/*; do cat "$f"; echo; done)
[ "$leaks" -eq 0 ] || die "$leaks secrets leaked into the logs"
ok "$(sort -u "$WORK/tokens" | wc -l) tokens and $(ls "$COMPOSE_DIR"/secrets | wc -l) secrets checked against $(wc -l <"$WORK/logs.txt") log lines"
