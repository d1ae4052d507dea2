#!/usr/bin/env bash
# Make sure decK (Kong's declarative-config CLI) is on PATH: Debian's `deck` package, installed with apt when missing
# and running as root (as scripts/ensure-services.sh installs PostgreSQL and Redis). Prints the deck path.
# Debian ships deck 1.4: `deck validate -s kong.yml` checks kong.yml offline (structure and foreign relations).
set -euo pipefail

log() { printf '[deck] %s\n' "$*" >&2; }

if ! command -v deck >/dev/null; then
  if [ "$(id -u)" != 0 ]; then log "deck is missing and this is not root: apt-get install -y deck"; exit 1; fi
  log "installing deck with apt"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq deck >/dev/null
fi
command -v deck
