#!/usr/bin/env bash
# Renders the storage-admission manifests (base and every overlay) with `kubectl kustomize`,
# validates every object against the Kubernetes schemas (kubernetes-validate, strict) and
# checks the invariants that keep the webhook safe (check_invariants.py). Ends with a line
# `N passed, M failed`; exits non-zero on any failure.
#
#   bash webhook-config/check.sh
#
# Needs kubectl (client only; no cluster), python3 with venv, and cargo (it builds the binary
# to check the Deployments' args). Python packages are installed once into a venv under
# target/ (override with STORAGE_ADMISSION_CHECK_VENV).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out="$root/target/webhook-config"
venv="${STORAGE_ADMISSION_CHECK_VENV:-$root/target/webhook-config-venv}"
# 1.30: the oldest Kubernetes the manifests support (preStop sleep, matchConditions GA);
# 1.33: the API version the crate is built against (k8s-openapi feature v1_33).
k8s_versions=(1.30.0 1.33.0)
# Pinned so CI is reproducible; kubernetes-validate 1.37.0 ships schemas for 1.25 to 1.37.
requirements=(kubernetes-validate==1.37.0 PyYAML==6.0.3 cel-python==0.5.0)

command -v kubectl >/dev/null || { echo "FAIL kubectl not found (client only is enough)"; echo "0 passed, 1 failed"; exit 1; }

if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml, celpy' 2>/dev/null; then
  echo "installing ${requirements[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
fi

mkdir -p "$out"
renders=()
render() { # NAME DIR
  local name=$1 dir=$2 file="$out/$1.yaml"
  rm -f "$file"
  if ! kubectl kustomize "$dir" >"$file.tmp" 2>"$out/$name.err"; then
    echo "kubectl kustomize $dir failed:" >&2
    cat "$out/$name.err" >&2
    rm -f "$file.tmp"
  else
    mv "$file.tmp" "$file"
  fi
  renders+=("$name=$file") # a missing file is reported as a failed render by the checker
}
render base "$here"
render cert-manager "$here/overlays/cert-manager"
render self-managed "$here/overlays/self-managed"
render dev-url "$here/overlays/dev-url"

# The binary checks each Deployment's args (`--check-args`): the debug build, as `cargo run`
# and the tests build it.
cargo build --quiet --locked --bin storage-admission
target_dir=$(cargo metadata --format-version 1 --no-deps --locked | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

version_args=()
for v in "${k8s_versions[@]}"; do version_args+=(--k8s-version "$v"); done
exec "$venv/bin/python" "$here/check_invariants.py" --repo "$root" --binary "$target_dir/debug/storage-admission" "${version_args[@]}" "${renders[@]}"
