#!/usr/bin/env bash
# Install bitnami's readme-generator-for-helm (pinned) from the npm registry into .venv/node (idempotent); install
# Node.js and npm with apt first when they are missing and we are root. Prints the CLI's path.
#
#   scripts/install-readme-generator.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${README_GENERATOR_PREFIX:-$ROOT/.venv/node}
VERSION=2.7.2
CLI=$PREFIX/node_modules/.bin/readme-generator

log() { printf '[readme-generator] %s\n' "$*" >&2; }

if [ -x "$CLI" ] && grep -q "\"version\": \"$VERSION\"" "$PREFIX/node_modules/@bitnami/readme-generator-for-helm/package.json"; then
  echo "$CLI"; exit 0
fi
if ! command -v npm >/dev/null; then
  [ "$(id -u)" = 0 ] || { log "npm is missing and we are not root"; exit 1; }
  log "installing nodejs and npm with apt"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --silent "@bitnami/readme-generator-for-helm@$VERSION" >&2
log "installed @bitnami/readme-generator-for-helm@$VERSION into $PREFIX"
echo "$CLI"
