#!/usr/bin/env bash
# Validates every manifest in deploy/k8s/ and every `baton inject` output against the OpenAPI
# schema of a current Kubernetes release, strictly (unknown fields are errors), with
# kubernetes-validate from PyPI in a venv under target/. Also checks that injecting twice changes
# nothing. The project's own consistency checks (selectors, probe ports, port collisions) are the
# Rust test `k8s::deploy_manifests_are_consistent_and_the_injected_chain_too`.
#
# Needs python3 with venv (Debian: python3, python3-venv), openssl (make-certs.sh), and a built
# `baton` with the `inject` subcommand ($BATON, default target/debug/baton).
set -euo pipefail
cd "$(dirname "$0")/../.."
K8S_VERSION="${K8S_VERSION:-1.37.0}"
VALIDATOR="kubernetes-validate==1.37.0"
BATON="${BATON:-target/debug/baton}"
venv="target/k8s-validate-venv"
"$BATON" inject --help >/dev/null 2>&1 || { echo "validate.sh: $BATON has no inject subcommand"; exit 1; }

if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "${VALIDATOR#*==}"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$VALIDATOR"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

deploy/k8s/make-certs.sh "$work/generated" >/dev/null
BATON_IDP="$(dirname "$BATON")/baton-idp" deploy/k8s/make-secrets.sh "$work/generated" >/dev/null
inputs=(deploy/k8s/chain/*.yaml tests/k8s/workloads.yaml)
for f in "${inputs[@]}"; do
  name="$(echo "$f" | tr / _)"
  "$BATON" inject --allow-image baton-init:dev -f "$f" > "$work/injected-$name" 2>/dev/null
  "$BATON" inject --allow-image baton-init:dev -f "$work/injected-$name" > "$work/twice-$name" 2>/dev/null
  cmp -s "$work/injected-$name" "$work/twice-$name" || { echo "FAIL: injecting $f twice changed it"; exit 1; }
done
grep -q "name: baton-init" "$work"/injected-*workloads.yaml || { echo "FAIL: no capture init container injected"; exit 1; }

files=(deploy/k8s/*.yaml deploy/k8s/chain/*.yaml "$work"/generated/*.yaml "$work"/injected-*)
"$venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${files[@]}"
echo "validate.sh: ${#files[@]} files valid for Kubernetes $K8S_VERSION (strict); inject is idempotent"
