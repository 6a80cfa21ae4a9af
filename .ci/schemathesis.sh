#!/usr/bin/env bash
# schemathesis (from PyPI, in a virtual environment of its own) with every
# check against a fresh keygate on SQLite, for at most $1 seconds (default
# 120); fails on any failure. Settings: .ci/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv=${KEYGATE_CI_VENV:-${TMPDIR:-/tmp}/keygate-ci-schemathesis-$SCHEMATHESIS_VERSION}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

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
KEYGATE_API_KEY=$("$keygate" bootstrap --database "$database" --email fuzz@example.com \
  --org-name Fuzz 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
KEYGATE_VERIFIER_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
export KEYGATE_API_KEY KEYGATE_VERIFIER_TOKEN

# The fuzzer sends many bad keys on purpose: the failed-authentication
# throttle would soon answer everything with 429.
KEYGATE_LOG=info "$keygate" serve --database "$database" --listen 127.0.0.1:0 \
  --failed-auth-limit 0 --verifier-token "$KEYGATE_VERIFIER_TOKEN" 2>"$work/server.log" &
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

# One worker: hypothesis can trip over itself parsing lambdas in several threads.
"$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run "http://$address/openapi.json" \
  --checks all --workers 1 --max-time "${1:-120}" --no-color
