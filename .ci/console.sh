#!/usr/bin/env bash
# The web console in a real headless Chromium (Debian's chromium and
# chromium-driver) against a fresh keygate on SQLite: tests/console/test_console.py,
# with selenium from PyPI in a virtual environment of its own. Fails on any
# failure, leaving a screenshot in target/console/. With
# KEYGATE_CONSOLE_SCREENSHOT=PATH it also saves the README's screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || { echo "$tool is missing: apt-get install chromium chromium-driver" >&2; exit 1; }
done
source .ci/server.sh

venv=$(python_tool selenium 4.27.1 selenium)
KEYGATE_KEY=$(bootstrap owner@example.com Acme)
export KEYGATE_KEY
start_keygate
export KEYGATE_URL="http://$address"
mkdir -p target/console
KEYGATE_CONSOLE_ARTIFACTS=target/console "$venv/bin/python" tests/console/test_console.py
