#!/usr/bin/env bash
# Instructions a keygate binary executes per request of one kind, counted
# by valgrind's callgrind: the same for the same binary and requests
# whatever else the machine does, so two builds compare exactly where
# wall-clock figures on a shared 2-core machine spread by ±10%.
#
#   bench/scripts/request-instructions.sh [REQUESTS] WORKLOAD BINARY [BINARY…]
#
# WORKLOAD: `verify` (POST /verify of the owner's key, action read), `create`
# (POST /apikey: a read key in the owner's organization, written to SQLite
# with its audit event) or `auth` (GET /auth as Caddy asks it). Each binary
# serves a fresh SQLite database (bootstrapped by itself); 200 requests warm
# it up, then the count is reset and REQUESTS (default 2000) are counted.
# Needs valgrind (callgrind_control) and python3.
set -euo pipefail
requests=2000
if [[ ${1:-} =~ ^[0-9]+$ ]]; then requests=$1; shift; fi
[ $# -ge 2 ] || { echo "usage: $0 [REQUESTS] verify|create|auth BINARY [BINARY…]" >&2; exit 2; }
workload=$1; shift
case $workload in verify|create|auth) ;; *) echo "unknown workload $workload" >&2; exit 2 ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/drive.py" <<'PY'
import http.client, json, sys
port, workload, key, org, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
connection = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for _ in range(n):
    if workload == "verify":
        body = json.dumps({"key": key, "action": "read"})
        connection.request("POST", "/verify", body=body,
                           headers={"authorization": "Bearer verifier-token-0123456789", "content-type": "application/json"})
    elif workload == "create":
        body = json.dumps({"org_id": org, "mode": "read"})
        connection.request("POST", "/apikey", body=body, headers={"authorization": key, "content-type": "application/json"})
    else:
        connection.request("GET", "/auth", headers={
            "x-forwarded-method": "GET", "x-forwarded-uri": "/builds/latest", "authorization": key})
    response = connection.getresponse()
    response.read()
    ok += response.status == 200
if ok != n:
    sys.exit(f"{n - ok} of {n} requests were not answered 200")
PY
port=23290
for binary in "$@"; do
  port=$((port + 1))
  dir="$work/$port"
  mkdir "$dir"
  "$binary" bootstrap --email owner@example.com --org-name Acme --database "sqlite://$dir/k.db" >"$dir/owner.json"
  key=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["key"])' "$dir/owner.json")
  org=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["org_id"])' "$dir/owner.json")
  KEYGATE_FORWARD_AUTH_PROXY=caddy KEYGATE_LOG=warn valgrind --tool=callgrind \
    --callgrind-out-file="$dir/callgrind.out" "$binary" serve --database "sqlite://$dir/k.db" \
    --listen "127.0.0.1:$port" --access-log false --verifier-token verifier-token-0123456789 \
    --failed-auth-limit 0 >"$dir/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.2
  done
  python3 "$work/drive.py" "$port" "$workload" "$key" "$org" 200
  callgrind_control -z "$server" >/dev/null 2>&1
  python3 "$work/drive.py" "$port" "$workload" "$key" "$org" "$requests"
  callgrind_control -d "$server" >/dev/null 2>&1
  kill -INT "$server"
  wait "$server" || true
  total=$(grep -h '^summary:' "$dir"/callgrind.out.1 | awk '{print $2}')
  echo "$binary: $((total / requests)) instructions per $workload request ($total for $requests)"
done
