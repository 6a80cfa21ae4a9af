#!/usr/bin/env bash
# The web console in a real headless Chromium (Debian's chromium and
# chromium-driver) against a fresh keygate on SQLite: tests/console/test_console.py,
# with selenium from PyPI in a virtual environment of its own. Fails on any
# failure, leaving a screenshot in target/console/. With
# KEYGATE_CONSOLE_SCREENSHOT=PATH it also saves the README's screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."

SELENIUM_VERSION=4.27.1
venv=${KEYGATE_CI_VENV_SELENIUM:-${TMPDIR:-/tmp}/keygate-ci-selenium-$SELENIUM_VERSION}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "selenium==$SELENIUM_VERSION"
fi
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || { echo "$tool is missing: apt-get install chromium chromium-driver" >&2; exit 1; }
done

cargo build --release --quiet -p keygate
keygate=${CARGO_TARGET_DIR:-target}/release/keygate
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

database="sqlite://$work/keygate.db"
KEYGATE_KEY=$("$keygate" bootstrap --database "$database" --email owner@example.com \
  --org-name Acme 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
export KEYGATE_KEY

KEYGATE_LOG=info "$keygate" serve --database "$database" --listen 127.0.0.1:0 2>"$work/server.log" &
server=$!
address=""
for _ in $(seq 1 100); do
  address=$(sed -n 's/.*listening address=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -n 1)
  [ -n "$address" ] && break
  sleep 0.1
done
if [ -z "$address" ]; then
  echo "keygate did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
export KEYGATE_URL="http://$address"
mkdir -p target/console
KEYGATE_CONSOLE_ARTIFACTS=target/console "$venv/bin/python" tests/console/test_console.py
