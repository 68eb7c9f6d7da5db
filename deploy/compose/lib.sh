# Shared by build.sh, up.sh and test.sh (sourced, not run): paths, the compose command, the
# generated secrets and a bounded wait for health. Callers set `set -euo pipefail` themselves.

COMPOSE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$COMPOSE_DIR/../.." && pwd)"
BATON_IMAGE="${BATON_IMAGE:-baton:dev}"
export BATON_IMAGE

# Users of idp.yaml. Their passwords are random per checkout, in secrets/USER.password (for
# `baton login --password-file`); the IdP reads only their argon2 hashes, secrets/USER.hash.
DEMO_USERS=(alice bob)

log() { printf '%s %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# `docker compose` (v2 plugin) when present, else the standalone `docker-compose`.
compose_cmd() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    return 1
  fi
}

# compose PROJECT ARGS...: compose on this folder's file for one project.
compose() {
  local project="$1"
  shift
  "${COMPOSE[@]}" --project-directory "$COMPOSE_DIR" -f "$COMPOSE_DIR/docker-compose.yml" \
    -p "$project" "$@"
}

# random FILE: 24 random bytes, URL-safe base64, unless FILE already holds a value.
random_into() {
  [ -s "$1" ] || head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n' >"$1"
}

# Client secrets and user passwords are random per checkout and never committed (secrets/ is
# git-ignored); the containers run as uid 65532, so the files must be readable by it: 0644 inside
# a 0755 folder. A password's hash comes from `baton-idp hash-password` in $BATON_IMAGE (built
# before this runs), made again when the password is newer. A password file that still holds
# the old published demo value is replaced: baton-idp refuses published values.
ensure_secrets() {
  local dir="$COMPOSE_DIR/secrets" c u
  mkdir -p "$dir"
  chmod 0755 "$dir"
  for c in service-a service-b service-c; do
    random_into "$dir/$c.secret"
    chmod 0644 "$dir/$c.secret"
  done
  for u in "${DEMO_USERS[@]}"; do
    if [ "$(cat "$dir/$u.password" 2>/dev/null)" = "$u-demo-password" ]; then
      rm -f "$dir/$u.password"
    fi
    random_into "$dir/$u.password"
    if [ ! -s "$dir/$u.hash" ] || [ "$dir/$u.hash" -ot "$dir/$u.password" ]; then
      docker run --rm -i --network none "$BATON_IMAGE" /baton-idp hash-password \
        <"$dir/$u.password" >"$dir/$u.hash.tmp" || die "hashing $u's password failed"
      mv "$dir/$u.hash.tmp" "$dir/$u.hash"
    fi
    chmod 0644 "$dir/$u.password" "$dir/$u.hash"
  done
}

# wait_healthy PROJECT TIMEOUT_SECONDS: until every container of the project is healthy (or
# running, when it has no health check). Fails early when one exits or turns unhealthy.
wait_healthy() {
  local project="$1" timeout="$2" deadline ids id state pending
  deadline=$((SECONDS + timeout))
  while :; do
    ids="$(compose "$project" ps -q)"
    [ -n "$ids" ] || die "project $project has no containers"
    pending=""
    for id in $ids; do
      state="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")"
      case "$state" in
        *" running healthy" | *" running none") ;;
        *" running starting") pending="$pending ${state%% *}" ;;
        *) compose "$project" logs --no-color --tail=40 >&2 || true
           die "container not healthy: $state" ;;
      esac
    done
    [ -z "$pending" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || die "still starting after ${timeout}s:$pending"
    sleep 1
  done
}
