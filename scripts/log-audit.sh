#!/usr/bin/env bash
# The whole-suite log audit: scripts/test.sh collects every log the test run makes
# into target/test-logs/ (the cargo test output with baton's logs at trace, the interop and
# browser tests' process logs); this fails when any of them holds a JWT (a token of any kind:
# access, ID, exchanged, a client assertion, a forged one), an `Authorization` value, or one of
# the fixed secrets the tests use (client secrets, passwords, the demo TOTP seed).
#
# Usage: scripts/log-audit.sh [DIR]        (DIR defaults to target/test-logs)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/test-logs}
[ -d "$dir" ] || { echo "log-audit: $dir does not exist: nothing was collected" >&2; exit 1; }
mapfile -t logs < <(find "$dir" -type f \( -name '*.log' \) -size +0 | sort)
[ "${#logs[@]}" -gt 0 ] || { echo "log-audit: no logs under $dir" >&2; exit 1; }
# An audit of logs that hold none of baton's own lines would pass without looking at anything.
grep -qs 'baton::' "${logs[@]}" || { echo "log-audit: no baton log line under $dir (RUST_LOG off?)" >&2; exit 1; }

# Fixed secrets: every `secret:`, `password:` and `totp_secret:` value in the configs the tests
# use, plus the e2e suite's own constants.
mapfile -t fixed < <(
  sed -n -E 's/^[[:space:]]*(secret|password|totp_secret):[[:space:]]*([^[:space:]#]+).*/\2/p' \
    deploy/idp.yaml deploy/compose/idp.yaml
  sed -n -E 's/.*const (ALICE_PASSWORD|CLIENT_SECRET): &str = "([^"]+)".*/\2/p' tests/e2e/support/*.rs
)
patterns=$(mktemp)
trap 'rm -f "$patterns"' EXIT
printf '%s\n' "${fixed[@]}" | sort -u | grep -v '^$' > "$patterns" || true
[ -s "$patterns" ] || { echo "log-audit: found no fixed secrets to look for" >&2; exit 1; }

jwt='eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}'
bearer='[Aa]uthorization:? *"?(Bearer|Basic) [A-Za-z0-9._~+/=-]{8,}'
fail=0
for f in "${logs[@]}"; do
  if grep -Eq "$jwt" "$f"; then echo "log-audit: a JWT in $f, line $(grep -Enm1 "$jwt" "$f" | cut -d: -f1)"; fail=1; fi
  if grep -Eq "$bearer" "$f"; then echo "log-audit: an Authorization value in $f, line $(grep -Enm1 "$bearer" "$f" | cut -d: -f1)"; fail=1; fi
  if grep -Fqf "$patterns" "$f"; then echo "log-audit: a fixed secret in $f, line $(grep -Fnm1 -f "$patterns" "$f" | cut -d: -f1)"; fail=1; fi
done
lines=$(cat "${logs[@]}" | wc -l)
if [ "$fail" -ne 0 ]; then
  echo "log-audit: FAILED (the lines are not printed here: they hold the secret)" >&2
  exit 1
fi
echo "log-audit: ok: ${#logs[@]} logs, $lines lines, no JWT, Authorization value or any of $(wc -l < "$patterns") fixed secrets"
