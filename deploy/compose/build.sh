#!/usr/bin/env bash
# Builds baton, baton-idp and baton-demo-app as static executables and the image $BATON_IMAGE
# (default baton:dev) FROM scratch holding them plus a minimal /etc/passwd and /etc/group.
# Nothing is pulled from any registry.
#
#   deploy/compose/build.sh              # cargo build --profile dist (static), then docker build
#   deploy/compose/build.sh --no-cargo   # image from binaries already in $BATON_BIN_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TARGET=x86_64-unknown-linux-gnu
BIN_DIR="${BATON_BIN_DIR:-$REPO_ROOT/target/$TARGET/dist}"
BINS=(baton baton-idp baton-demo-app)

if [ "${1:-}" != "--no-cargo" ]; then
  # The `dist` profile (Cargo.toml): release optimised across crates, what the benchmarks measure.
  log "cargo build --profile dist (static, $TARGET)"
  # glibc links statically with crt-static; since 2.34 its NSS "files" and "dns" backends are
  # built in, so names (compose services) resolve in an empty image. An explicit --target keeps
  # RUSTFLAGS off build scripts and proc-macros.
  (cd "$REPO_ROOT" && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --profile dist --locked --target "$TARGET" --bins)
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin" "$ctx/rootfs/etc" "$ctx/keydir"
for b in "${BINS[@]}"; do
  [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b missing: run without --no-cargo"
  # A dynamic executable has a program interpreter; it would not start in an empty image.
  if readelf -lW "$BIN_DIR/$b" | grep -q 'program interpreter'; then
    die "$BIN_DIR/$b is dynamically linked; build with RUSTFLAGS='-C target-feature=+crt-static'"
  fi
  strip --strip-debug -o "$ctx/bin/$b" "$BIN_DIR/$b"
done
cat >"$ctx/rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
baton:x:65532:65532:baton:/nonexistent:/sbin/nologin
PASSWD
cat >"$ctx/rootfs/etc/group" <<'GROUP'
root:x:0:
baton:x:65532:
GROUP
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
chmod 0755 "$ctx/bin"/* "$ctx/keydir"

log "docker build $BATON_IMAGE (FROM scratch, no pull)"
docker build --pull=false -q -t "$BATON_IMAGE" \
  --label "org.opencontainers.image.source=baton deploy/compose" \
  --label "org.opencontainers.image.revision=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -f "$COMPOSE_DIR/Dockerfile" "$ctx" >/dev/null
log "built $BATON_IMAGE ($(docker image inspect -f '{{.Size}}' "$BATON_IMAGE") bytes)"
