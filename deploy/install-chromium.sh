#!/usr/bin/env bash
# Debian's chromium for the console's browser test (tests/test_console_browser.py drives it with
# Playwright's Python package; `playwright install` is never run). No-op when it is present.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  echo "    chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
/usr/bin/chromium --version
