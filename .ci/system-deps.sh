#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing:
#   chromium         browser tests of the dashboard (never downloaded by a test tool)
#   poppler-utils    pdftotext/pdftoppm, to read and render exported PDFs
#   npm              installs axe-core (accessibility checks of the browser tests) from the npm registry
#   nginx            reverse proxy of `make serve` (dashboard replicas), tested by tests/browser/test_replicas.py
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
command -v npm >/dev/null 2>&1 || missing+=(npm)
{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 || missing+=(nginx)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages for the tests: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
