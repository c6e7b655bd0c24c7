#!/usr/bin/env bash
# RFC 6455 conformance: runs the Autobahn|Testsuite against the wssd daemon
# (server mode) and the wssd::client library (client mode), and judges the
# JSON reports against tests/autobahn/expected-*.json.
#
#   tests/autobahn/run.sh [all|server|client|setup] [--update]
#
#   setup   only create the wstest virtualenv (target/autobahn-venv)
#   server  wssd echo route  <- wstest -m fuzzingclient, all cases
#   client  examples/autobahn_client -> wstest -m fuzzingserver, all cases
#   all     server and client side by side (the default): the 216
#           permessage-deflate cases (12.*, 13.*) are slow in wstest, and
#           the two runs share nothing but the CPUs
#   --update  rewrite the expected files from this run (after an improvement)
#
# The whole suite runs, 1.* to 13.*: the daemon's echo route negotiates
# permessage-deflate (compression = "deflate"), and wssd::client offers it
# by default.
#
# Environment:
#   AUTOBAHN_PYTHON27  Python 2.7 interpreter (default: pyenv's 2.7.18)
#   AUTOBAHN_TIMEOUT   limit for one wstest run, seconds (default 3600: the
#                      compression cases are slow in wstest on a loaded machine)
#   AUTOBAHN_KEEP      keep reports of earlier runs (default: cleared)
#   AUTOBAHN_VENV      where the virtualenv lives (default target/autobahn-venv)
#
# Reports: target/autobahn/{server,client}/reports/index.html and index.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/autobahn"
OUT="$ROOT/target/autobahn"
VENV="${AUTOBAHN_VENV:-$ROOT/target/autobahn-venv}"
AGENT=wssd
TIMEOUT=${AUTOBAHN_TIMEOUT:-3600}
VIRTUALENV_VERSION=16.7.12
SUITE_VERSION=25.10.1

MODE=all
UPDATE=()
for arg in "$@"; do
    case "$arg" in
        all | server | client | setup) MODE=$arg ;;
        --update) UPDATE=(--update) ;;
        *)
            echo "usage: $0 [all|server|client|setup] [--update]" >&2
            exit 2
            ;;
    esac
done

say() { echo "autobahn: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

# ---- the wstest virtualenv ----

find_python27() {
    if [ -n "${AUTOBAHN_PYTHON27:-}" ]; then
        echo "$AUTOBAHN_PYTHON27"
        return
    fi
    local root
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    echo "$root/versions/2.7.18/bin/python2.7"
}

setup_venv() {
    if [ -x "$VENV/bin/wstest" ] && [ -f "$VENV/.complete-$SUITE_VERSION" ]; then
        return
    fi
    local py
    py=$(find_python27)
    if [ ! -x "$py" ] || ! "$py" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
        die "Python 2.7 not found at '$py'. The Autobahn|Testsuite needs it: install it with 'pyenv install 2.7.18' or point AUTOBAHN_PYTHON27 at a python2.7."
    fi
    say "creating the wstest virtualenv in $VENV (virtualenv $VIRTUALENV_VERSION, autobahntestsuite $SUITE_VERSION) with $py"
    local started=$SECONDS
    rm -rf "$VENV" "$VENV.bootstrap"
    # virtualenv goes into a private folder, not the interpreter's site-packages.
    "$py" -m pip install --disable-pip-version-check -q --target "$VENV.bootstrap" \
        "virtualenv==$VIRTUALENV_VERSION" 2>&1 | grep -v DEPRECATION >&2 || true
    [ -f "$VENV.bootstrap/virtualenv.py" ] || die "installing virtualenv==$VIRTUALENV_VERSION failed"
    PYTHONPATH="$VENV.bootstrap" "$py" -m virtualenv -q "$VENV" >&2 ||
        die "creating the virtualenv failed"
    "$VENV/bin/pip" install --disable-pip-version-check -q "autobahntestsuite==$SUITE_VERSION" 2>&1 |
        grep -v DEPRECATION >&2 || true
    [ -x "$VENV/bin/wstest" ] || die "installing autobahntestsuite==$SUITE_VERSION failed"
    rm -rf "$VENV.bootstrap"
    touch "$VENV/.complete-$SUITE_VERSION"
    say "virtualenv ready in $((SECONDS - started))s"
}

# ---- helpers ----

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Give each a moment, then insist.
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to $2 seconds for `$1` (a command) to succeed.
wait_until() {
    local cond=$1 limit=$2 start=$SECONDS
    until eval "$cond"; do
        [ $((SECONDS - start)) -lt "$limit" ] || return 1
        sleep 0.1
    done
}

build() {
    say "building the release wssd and examples/autobahn_client"
    (cd "$ROOT" && cargo build --release --quiet --bin wssd --example autobahn_client) ||
        die "cargo build failed"
}

judge() {
    local mode=$1
    "$VENV/bin/python" "$HERE/judge.py" "$mode" "$OUT/$mode/reports" "$AGENT" \
        "$HERE/expected-$mode.json" "${UPDATE[@]}"
}

# The whole suite, permessage-deflate (12.*, 13.*) included.
CASES='["*"]'
EXCLUDED='[]'

# ---- server mode: wstest is the client, wssd the server ----

run_server() {
    local dir="$OUT/server"
    [ -n "${AUTOBAHN_KEEP:-}" ] || rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/wssd.toml" <<'EOF'
# wssd for the Autobahn|Testsuite (tests/autobahn/run.sh): an echo route
# whose limits cover the suite's largest messages (16 MiB in 9.1.6/9.2.6).
[server]
listen = "127.0.0.1:0"
workers = 2
max_message_size = "64MiB"
max_frame_size = "64MiB"
max_send_buffer = "64MiB"
drain_timeout = 2
compression = "deflate"      # cases 12.* and 13.*

[log]
level = "info"               # the address is logged at info

[[routes]]
path = "/echo"
handler = "echo"
max_message_size = "64MiB"
EOF
    "$ROOT/target/release/wssd" --config "$dir/wssd.toml" 2>"$dir/wssd.log" &
    local wssd=$!
    PIDS+=("$wssd")
    wait_until "grep -q 'listening on' '$dir/wssd.log' || ! kill -0 $wssd 2>/dev/null" 30 ||
        die "wssd did not start listening within 30s; see $dir/wssd.log"
    local addr
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$dir/wssd.log" | head -1)
    [ -n "$addr" ] || die "wssd did not start; see $dir/wssd.log: $(tail -5 "$dir/wssd.log")"
    say "server: wssd pid $wssd on $addr; running wstest -m fuzzingclient (all cases)"
    cat >"$dir/fuzzingclient.json" <<EOF
{
  "outdir": "$dir/reports",
  "servers": [{"agent": "$AGENT", "url": "ws://$addr/echo"}],
  "cases": $CASES,
  "exclude-cases": $EXCLUDED,
  "exclude-agent-cases": {}
}
EOF
    local started=$SECONDS status=0
    (cd "$dir" && timeout --kill-after=10 "$TIMEOUT" "$VENV/bin/wstest" -m fuzzingclient \
        -s "$dir/fuzzingclient.json" >"$dir/wstest.log" 2>&1) || status=$?
    [ "$status" -ne 124 ] && [ "$status" -ne 137 ] ||
        die "server: wstest did not finish within ${TIMEOUT}s (a hanging case?); see $dir/wstest.log"
    [ "$status" -eq 0 ] || die "server: wstest failed with status $status; see $dir/wstest.log"
    kill -0 "$wssd" 2>/dev/null || die "server: wssd died during the run; see $dir/wssd.log"
    say "server: wstest finished in $((SECONDS - started))s"
    cleanup
    judge server
}

# ---- client mode: wstest is the server, wssd::client the client ----

run_client() {
    local dir="$OUT/client"
    [ -n "${AUTOBAHN_KEEP:-}" ] || rm -rf "$dir"
    mkdir -p "$dir"
    local port
    port=$(free_port)
    cat >"$dir/fuzzingserver.json" <<EOF
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$dir/reports",
  "cases": $CASES,
  "exclude-cases": $EXCLUDED,
  "exclude-agent-cases": {}
}
EOF
    # --webport 0: no report web server (it would take port 8080, which
    # another run on the same machine may hold, and wstest then dies).
    (cd "$dir" && exec "$VENV/bin/wstest" -m fuzzingserver --webport 0 -s "$dir/fuzzingserver.json") \
        >"$dir/wstest.log" 2>&1 &
    local wstest=$!
    PIDS+=("$wstest")
    wait_until "(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null || ! kill -0 $wstest 2>/dev/null" 60 ||
        die "client: wstest -m fuzzingserver did not listen on port $port within 60s; see $dir/wstest.log"
    kill -0 "$wstest" 2>/dev/null ||
        die "client: wstest -m fuzzingserver exited; see $dir/wstest.log: $(tail -5 "$dir/wstest.log")"
    say "client: wstest -m fuzzingserver pid $wstest on 127.0.0.1:$port; running examples/autobahn_client"
    local started=$SECONDS status=0
    timeout --kill-after=10 "$TIMEOUT" "$ROOT/target/release/examples/autobahn_client" \
        "ws://127.0.0.1:$port" "$AGENT" 2>"$dir/client.log" || status=$?
    [ "$status" -ne 124 ] && [ "$status" -ne 137 ] ||
        die "client: autobahn_client did not finish within ${TIMEOUT}s; see $dir/client.log"
    [ "$status" -eq 0 ] ||
        die "client: autobahn_client failed with status $status: $(tail -3 "$dir/client.log")"
    say "client: $(tail -1 "$dir/client.log" | sed 's/^autobahn_client: //') in $((SECONDS - started))s"
    cleanup
    judge client
}

setup_venv
[ "$MODE" = setup ] && exit 0
build
case "$MODE" in
    server) run_server ;;
    client) run_client ;;
    all)
        # Side by side; each subshell reaps its own processes.
        started=$SECONDS
        (trap cleanup EXIT; run_server) &
        server=$!
        (trap cleanup EXIT; run_client) &
        client=$!
        failed=0
        wait "$server" || failed=1
        wait "$client" || failed=1
        say "server and client suites finished in $((SECONDS - started))s"
        exit $failed
        ;;
esac
