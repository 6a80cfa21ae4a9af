#!/usr/bin/env bash
# schemathesis (from PyPI, in a virtual environment of its own) with every
# check against a fresh keygate on SQLite, for at most $1 seconds (default
# 120); fails on any failure. Settings: .ci/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/server.sh

venv=${KEYGATE_CI_VENV:-$(python_tool schemathesis 4.32.5 schemathesis)}

KEYGATE_API_KEY=$(bootstrap fuzz@example.com Fuzz)
KEYGATE_VERIFIER_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
export KEYGATE_API_KEY KEYGATE_VERIFIER_TOKEN

# The fuzzer sends many bad keys on purpose: the failed-authentication
# throttle would soon answer everything with 429.
start_keygate --failed-auth-limit 0 --verifier-token "$KEYGATE_VERIFIER_TOKEN" --forward-auth-proxy envoy

# One worker: hypothesis can trip over itself parsing lambdas in several threads.
"$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run "http://$address/openapi.json" \
  --workers 1 --max-time "${1:-120}" --no-color
