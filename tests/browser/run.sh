#!/usr/bin/env bash
# Real-browser tests of sign-in and step-up, headless Chromium driven by selenium:
# 1. stepup.py, at the IdP alone: alice signs in with her password, then steps up to `mfa` with
#    the current TOTP code and is not asked for the password again; acr/amr are checked; then
#    she signs out through the IdP's confirmation page (its POST as Chromium sends it). Then a
#    page on another origin posts a login form with the attacker's credentials: refused, and
#    alice's next sign-in is still alice's.
# 2. chain.py, through `baton demo --serve`: A's sidecar sends the browser to sign in, C's
#    answer is shown; C's mfa challenge makes A's sidecar step the browser up (code only) and
#    replay the page; sign-out at A ends the IdP session too (the password is asked again).
# On every page both flows reach (sign-in, one-time code, their errors, sign-out confirmation,
# signed out, error pages, the demo's echo page, the sidecar's sign-out page) axe-core checks
# WCAG 2.2 AA in light and dark, and screenshots in light and dark at desktop and phone widths
# go to target/artifacts/ (pages.py). stepup.py's IdP is branded (name, logo, accent) to check
# that look too; the chain shows the default one. With DOCS_SCREENSHOTS=1 the set shown in
# docs/sign-in-pages.md is copied to docs/screenshots/, made smaller with pngquant.
# Loopback only, bounded, cleans up after itself.
#
# Needs: Debian packages chromium and chromium-driver (installed here when missing, as root),
# python3 with venv; selenium, pyotp and selenium-axe-python (which ships axe-core: nothing is
# fetched at test time) come from PyPI into target/browser-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
venv=$root/target/browser-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium, pyotp, selenium_axe_python' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q selenium pyotp 'selenium-axe-python>=2.2'
fi
cargo build -q --bin baton-idp --bin baton

work=$(mktemp -d)
idp_pid=""
demo_pid=""
cleanup() {
  if [ -n "$idp_pid" ]; then kill "$idp_pid" 2>/dev/null || true; wait "$idp_pid" 2>/dev/null || true; fi
  if [ -n "$demo_pid" ]; then kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
  # The IdP's log joins the whole-suite log audit (scripts/log-audit.sh). The demo's output is
  # left out: it prints the demo credentials for the user on purpose.
  if [ -f "$work/idp.log" ]; then mkdir -p "$root/target/test-logs/browser" && cp "$work/idp.log" "$root/target/test-logs/browser/"; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
idp_port=$(free_port)
cb_port=$(free_port)
sed -e "s#127.0.0.1:9000#127.0.0.1:$idp_port#g" \
    -e "s#http://127.0.0.1:8080/callback#http://127.0.0.1:$cb_port/callback#" \
    -e "s#dir: idp-keys#dir: $work/keys#" \
    -e "s#admin_listen: 127.0.0.1:9001#admin_listen: 127.0.0.1:0#" \
    deploy/idp.yaml > "$work/idp.yaml"
cp tests/browser/logo.svg "$work/logo.svg"
cat >> "$work/idp.yaml" <<'YAML'
branding:
  product_name: Example Corp
  logo_file: logo.svg
  accent_color: "#0f766e"
  home_url: https://portal.example/
YAML
totp_secret=$(sed -n 's/^ *totp_secret: *//p' deploy/idp.yaml | head -1)

RUST_LOG=baton=trace,info "$root/target/debug/baton-idp" --allow-inline-secrets -c "$work/idp.yaml" > "$work/idp.log" 2>&1 &
idp_pid=$!
for _ in $(seq 1 100); do   # bounded wait for readiness (about 10 s)
  if curl -fsS "http://127.0.0.1:$idp_port/.well-known/openid-configuration" >/dev/null 2>&1; then break; fi
  kill -0 "$idp_pid" 2>/dev/null || { cat "$work/idp.log"; exit 1; }
  sleep 0.1
done

mkdir -p "$root/target/artifacts"
ISSUER="http://127.0.0.1:$idp_port" CALLBACK_PORT="$cb_port" TOTP_SECRET="$totp_secret" \
ARTIFACTS="$root/target/artifacts" \
  timeout 180 "$venv/bin/python" tests/browser/stepup.py || { echo "--- idp log"; tail -50 "$work/idp.log"; exit 1; }

# The demo chain: A's sidecar signs the browser in (login: browser) and steps it up.
"$root/target/debug/baton" demo --serve > "$work/demo.log" 2>&1 &
demo_pid=$!
edge=""
for _ in $(seq 1 200); do   # bounded wait for the chain (about 20 s)
  edge=$(sed -n 's/^open \(http:[^ ]*\)\/ in a browser.*/\1/p' "$work/demo.log" | head -1)
  [ -n "$edge" ] && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$work/demo.log"; exit 1; }
  sleep 0.1
done
[ -n "$edge" ] || { echo "baton demo --serve did not start"; cat "$work/demo.log"; exit 1; }
EDGE="$edge" TOTP_SECRET="$totp_secret" ARTIFACTS="$root/target/artifacts" \
  timeout 180 "$venv/bin/python" tests/browser/chain.py || { echo "--- demo log"; tail -50 "$work/demo.log"; exit 1; }

# The screenshots docs/sign-in-pages.md shows, made small (pngquant from Debian).
if [ "${DOCS_SCREENSHOTS:-}" = 1 ]; then
  command -v pngquant >/dev/null || apt-get install -y -qq --no-install-recommends pngquant
  mkdir -p docs/screenshots
  for shot in sign-in-light-desktop sign-in-dark-desktop sign-in-error-light-phone \
              sign-in-dark-phone one-time-code-light-desktop one-time-code-error-dark-phone \
              sign-out-light-desktop signed-out-dark-desktop error-bad-link-light-desktop \
              chain-sign-in-light-desktop demo-echo-light-desktop demo-echo-dark-phone \
              app-sign-out-dark-desktop; do
    pngquant --force --strip --speed 1 --quality 60-85 --output "docs/screenshots/$shot.png" \
      "$root/target/artifacts/$shot.png"
  done
  du -ch docs/screenshots/*.png | tail -1
fi
