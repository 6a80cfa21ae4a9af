#!/usr/bin/env bash
# Instructions a keygate binary executes per `GET /auth` request, counted by
# valgrind's callgrind: the same for the same binary and requests whatever
# else the machine does, so two builds compare exactly where wall-clock
# figures on a shared 2-core machine spread by ±10%.
#
#   bench/scripts/auth-instructions.sh [REQUESTS] BINARY [BINARY…]
#
# Each binary serves a fresh SQLite database (bootstrapped by itself), asked
# as Caddy and Traefik ask (X-Forwarded-Method / X-Forwarded-Uri, the
# environment naming the proxy, which a release without that setting
# ignores); 200 requests warm it up, then the count is reset and REQUESTS
# (default 3000) are counted. Needs valgrind (callgrind_control) and python3.
set -euo pipefail
requests=3000
if [[ ${1:-} =~ ^[0-9]+$ ]]; then requests=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [REQUESTS] BINARY [BINARY…]" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/drive.py" <<'PY'
import http.client, sys
port, key, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
connection = http.client.HTTPConnection("127.0.0.1", port)
allowed = 0
for _ in range(n):
    connection.request("GET", "/auth", headers={
        "x-forwarded-method": "GET", "x-forwarded-uri": "/builds/latest", "authorization": key})
    response = connection.getresponse()
    response.read()
    allowed += response.status == 200
if allowed != n:
    sys.exit(f"{n - allowed} of {n} requests were not allowed")
PY
port=23190
for binary in "$@"; do
  port=$((port + 1))
  dir="$work/$port"
  mkdir "$dir"
  key=$("$binary" bootstrap --email owner@example.com --org-name Acme --database "sqlite://$dir/k.db" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
  KEYGATE_FORWARD_AUTH_PROXY=caddy KEYGATE_LOG=warn valgrind --tool=callgrind \
    --callgrind-out-file="$dir/callgrind.out" "$binary" serve --database "sqlite://$dir/k.db" \
    --listen "127.0.0.1:$port" --access-log false >"$dir/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.2
  done
  python3 "$work/drive.py" "$port" "$key" 200
  callgrind_control -z "$server" >/dev/null 2>&1
  python3 "$work/drive.py" "$port" "$key" "$requests"
  callgrind_control -d "$server" >/dev/null 2>&1
  kill -INT "$server"
  wait "$server" || true
  total=$(grep -h '^summary:' "$dir"/callgrind.out.1 | awk '{print $2}')
  echo "$binary: $((total / requests)) instructions per /auth request ($total for $requests)"
done
