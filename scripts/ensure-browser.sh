#!/usr/bin/env bash
# Headless Chromium and chromedriver for the OAuth consent-page test (tests/e2e/test_oauth_e2e.py), installed before
# the suite starts so a first `make test` says what it is doing instead of waiting silently inside a fixture.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
APT_TAG=browser "$(dirname "$0")/apt-install.sh" chromium chromium-driver
