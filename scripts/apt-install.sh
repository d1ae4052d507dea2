#!/usr/bin/env bash
# apt-install.sh PACKAGE...: install Debian packages, saying what it does; apt's output goes to a log file that is
# printed (its last 40 lines) when apt fails, so errors are never buried and success stays short.
set -euo pipefail
tag=${APT_TAG:-apt}
log() { printf '[%s] %s\n' "$tag" "$*" >&2; }
if [ "$(id -u)" != 0 ]; then log "missing $*; not root, cannot install (install them with your package manager)"; exit 1; fi
out=$(mktemp /tmp/storyverse-apt.XXXXXX.log)
log "installing $* with apt (a minute or two; output in $out)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y "$@"; } >"$out" 2>&1; then
  log "apt-get failed installing $*; the end of its output:"
  tail -n 40 "$out" >&2
  exit 1
fi
log "installed $*"
rm -f "$out"
