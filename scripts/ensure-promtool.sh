#!/usr/bin/env bash
# Make sure `promtool` (Prometheus' rule checker) is on hand for the alert tests: use the one on PATH, else take it
# out of Debian's `prometheus` package into $TOOLS_BIN (default: .venv/bin) without installing the package (no
# daemon, no service user: `apt-get download` + `dpkg-deb -x`, promtool is one static binary). Idempotent.
#
#   scripts/ensure-promtool.sh     # prints the promtool path
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS_BIN=${TOOLS_BIN:-$ROOT/.venv/bin}

log() { printf '[promtool] %s\n' "$*" >&2; }

if [ -x "$TOOLS_BIN/promtool" ]; then echo "$TOOLS_BIN/promtool"; exit 0; fi
if command -v promtool >/dev/null; then command -v promtool; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
  log "refreshing the apt lists"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  apt-get download prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb root
mkdir -p "$TOOLS_BIN"
install -m 0755 root/usr/bin/promtool "$TOOLS_BIN/promtool"
log "installed $("$TOOLS_BIN/promtool" --version 2>&1 | head -n1) into $TOOLS_BIN"
echo "$TOOLS_BIN/promtool"
