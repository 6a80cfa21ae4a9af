#!/usr/bin/env bash
# Instructions a keygate binary executes per `GET /auth` request (as Caddy
# and Traefik ask it), counted by valgrind's callgrind:
#
#   bench/scripts/auth-instructions.sh [REQUESTS] BINARY [BINARY…]
#
# The same as `request-instructions.sh [REQUESTS] auth BINARY…`.
set -euo pipefail
requests=()
if [[ ${1:-} =~ ^[0-9]+$ ]]; then requests=("$1"); shift; fi
exec "$(dirname "$0")/request-instructions.sh" "${requests[@]}" auth "$@"
