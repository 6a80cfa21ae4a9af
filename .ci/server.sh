# Sourced by the CI scripts that test a running keygate: a Python tool in
# a virtual environment of its own, and a fresh keygate on SQLite in a
# temporary directory, stopped and removed on exit.

# python_tool NAME VERSION MODULE: the venv's directory, created with
# NAME==VERSION installed if MODULE does not import there yet.
python_tool() {
  local venv=${TMPDIR:-/tmp}/keygate-ci-$1-$2
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import $3" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "$1==$2"
  fi
  echo "$venv"
}

# The binary in KEYGATE_BIN (as CI gives it), else a release build.
if [ -n "${KEYGATE_BIN:-}" ]; then
  keygate=$KEYGATE_BIN
else
  cargo build --release --quiet -p keygate
  keygate=${CARGO_TARGET_DIR:-target}/release/keygate
fi
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
database="sqlite://$work/keygate.db"

# bootstrap EMAIL ORG: the new owner's key.
bootstrap() {
  "$keygate" bootstrap --database "$database" --email "$1" --org-name "$2" 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}

# start_keygate [SERVE FLAGS…]: serves the database on a free port, and sets
# $address once it listens.
start_keygate() {
  KEYGATE_LOG=info "$keygate" serve --database "$database" --listen 127.0.0.1:0 "$@" 2>"$work/server.log" &
  server=$!
  address=""
  for _ in $(seq 1 100); do
    address=$(sed -n 's/.*listening address=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -n 1)
    [ -n "$address" ] && return 0
    sleep 0.1
  done
  echo "keygate did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
}
