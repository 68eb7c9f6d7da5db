#!/usr/bin/env bash
# The one command to run the demo chain: builds the image (unless --no-build), generates the demo
# secrets, starts idp + A, B, C with their sidecars and waits until every container is healthy.
#
#   deploy/compose/up.sh               # build + start; prints how to call the chain
#   deploy/compose/up.sh --no-build    # start with the existing $BATON_IMAGE
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROJECT="${COMPOSE_PROJECT_NAME:-baton}"

compose_cmd || die "neither 'docker compose' nor 'docker-compose' found"
docker info >/dev/null 2>&1 || die "docker is not reachable"
[ "${1:-}" = "--no-build" ] || "$COMPOSE_DIR/build.sh"
ensure_secrets
log "starting project $PROJECT"
compose "$PROJECT" up -d --remove-orphans
wait_healthy "$PROJECT" 120
log "the chain is up"

dc="${COMPOSE[*]} -p $PROJECT -f deploy/compose/docker-compose.yml"
[ "$BATON_IMAGE" = baton:dev ] || dc="BATON_IMAGE=$BATON_IMAGE $dc"
cat <<USAGE

  The chain is up. From the repository root:

  # 1. sign alice in at service-a (the real login form, code + PKCE), from inside the network
  #    where http://idp:9000 resolves:
  TOKEN=\$($dc run --rm --no-deps -T cli \\
      login --issuer http://idp:9000 --client-id service-a \\
      --client-secret-file /run/secrets/service-a.secret \\
      --redirect-uri http://127.0.0.1:8080/callback \\
      --username alice --password-file /run/secrets/alice.password | jq -r .access_token)

  # 2. call A; A calls B, B calls C, each hop with a token the IdP re-issued for it:
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/ | jq .next.next.claims

  # follow the logs; stop and remove everything (the key volume too):
  $dc logs -f
  $dc down -v --remove-orphans

USAGE
