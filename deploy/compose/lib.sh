# Shared by build.sh, up.sh and test.sh (sourced, not run): paths, the compose command, demo
# secrets and a bounded wait for health. Callers set `set -euo pipefail` themselves.

COMPOSE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$COMPOSE_DIR/../.." && pwd)"
BATON_IMAGE="${BATON_IMAGE:-baton:dev}"
export BATON_IMAGE

# Demo users of idp.yaml. Their argon2 hashes are in idp.yaml; the passwords are documented demo
# values (README.md), written to secrets/ so `baton login --password-file` can read them.
DEMO_USERS=(alice bob)
demo_password() { printf '%s-demo-password' "$1"; }

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

# Client secrets are random per checkout and never committed (secrets/ is git-ignored); the
# containers run as uid 65532, so the files must be readable by it: 0644 inside a 0755 folder.
ensure_secrets() {
  local dir="$COMPOSE_DIR/secrets" c u
  mkdir -p "$dir"
  chmod 0755 "$dir"
  for c in service-a service-b service-c; do
    if [ ! -s "$dir/$c.secret" ]; then
      head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n' >"$dir/$c.secret"
    fi
    chmod 0644 "$dir/$c.secret"
  done
  for u in "${DEMO_USERS[@]}"; do
    demo_password "$u" >"$dir/$u.password"
    chmod 0644 "$dir/$u.password"
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
