#!/usr/bin/env bash
# User-space instructions per unit of work of wssd's worker and of the
# matching uWebSockets peer, counted by valgrind's callgrind: a figure
# that, unlike CPU time on a shared machine, does not move from run to
# run. Kernel time (about 85-90 % of an echo's CPU here, the same
# syscalls for both servers) is not in it; see docs/benchmarks.md.
#
# Usage: bench/scripts/instructions.sh [MODE] [ARG...]
#   echo [SIZE...]     per echoed text message (default 64 16384), against EchoServer
#   wss [SIZE...]      the same over TLS (default 64), against EchoServerSSL
#   handshake          per WebSocket handshake (100 connections at a time), against EchoServer
#   broadcast [N...]   per delivery of `wssd bench -m broadcast -w 4` to N receivers
#                      (default 1000), against BroadcastServer
# (a bare number as the first argument means `echo`, as before).
#
# Each server runs twice, for BENCH_SECS (default 4) and three times
# that, and the figure is the difference per unit: what a unit costs
# without the startup (the dynamic linker's relocations alone are about
# 4 M instructions) and the 100 connections' setup (with TLS, millions
# of instructions per handshake under valgrind), so it does not depend
# on how many units the load reached.
#
# Needs valgrind, a release build (make release; BENCH_WSSD names another
# binary, e.g. target/pgo/release/wssd, a relative path taken from where
# the script is started), and for the peers
# BENCH_UWS_DIR (default ../shared/peers/uws). Prints one line per server
# and size; leaves the callgrind files in a temporary directory for
# `callgrind_annotate`.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/../.."
root=$(pwd)
wssd=${BENCH_WSSD:-$root/target/release/wssd}
# The servers run from a temporary directory: a path given relative to
# where the script was started would not name the binary there.
case $wssd in /*) ;; *) wssd=$caller/$wssd ;; esac
peers=${BENCH_UWS_DIR:-$root/../shared/peers/uws}
secs=${BENCH_SECS:-4}
mode=echo
case "${1:-}" in
    echo|wss|handshake|broadcast) mode=$1; shift ;;
esac
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
    case $mode in
        echo) args=(64 16384) ;;
        wss) args=(64) ;;
        handshake) args=(100) ;;
        broadcast) args=(1000) ;;
    esac
fi
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is required" >&2; exit 2; }
[ -x "$wssd" ] || { echo "instructions.sh: build with 'make release' first" >&2; exit 2; }

tmp=$(mktemp -d /tmp/wssd-instructions.XXXXXX)
server=
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (up to 60 s) until the port accepts connections.
wait_port() {
    for _ in $(seq 600); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "instructions.sh: nothing listens on port $1" >&2
    return 1
}

# The units of work of one load against PORT (ARG: size or receivers)
# lasting SECS: messages echoed, handshakes, or deliveries.
load() {
    local port=$1 arg=$2 secs=$3 field=messages
    local common=(--json -t 1 -d "$secs" --connect-timeout 60)
    local cmd
    case $mode in
        echo) cmd=("ws://127.0.0.1:$port/echo" -c 100 --text -s "$arg") ;;
        wss) cmd=("wss://127.0.0.1:$port/echo" --insecure -c 100 --text -s "$arg") ;;
        handshake) cmd=("ws://127.0.0.1:$port/echo" -c "$arg" -m handshake); field=handshakes ;;
        broadcast) cmd=("ws://127.0.0.1:$port/chat/bench" -c "$arg" -m broadcast -w 4) ;;
    esac
    "$wssd" bench "${cmd[@]}" "${common[@]}" |
        tail -1 | python3 -c "import json,sys; print(json.load(sys.stdin)['$field'])"
}

# Instructions of the callgrind output of PID (as valgrind reported them).
collected() {
    grep "^==$2== Collected" "$1" | awk '{gsub(",","",$4); print $4}'
}

report() {
    local label=$1 arg=$2 units=$3 instructions=$4
    printf '%-12s %-10s %-6s %9s units  %13s instructions  %7s per unit\n' \
        "$label" "$mode" "$arg" "$units" "$instructions" $((instructions / units))
}

# A self-signed certificate for the TLS runs.
if [ "$mode" = wss ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
fi

# wssd with 1 worker; prints "UNITS INSTRUCTIONS" of its worker (a
# forked child) for a load of SECS.
run_wssd() {
    local arg=$1 secs=$2 port log worker units
    port=$(free_port)
    cat >"$tmp/wssd.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
workers = 1
[log]
level = "info"
access_log = false
[[routes]]
path = "/echo"
handler = "echo"
[[routes]]
path = "/chat/{room}"
handler = "broadcast"
EOF
    if [ "$mode" = wss ]; then
        printf '[tls]\ncert = "%s"\nkey = "%s"\n' "$tmp/cert.pem" "$tmp/key.pem" >>"$tmp/wssd.toml"
    fi
    log="$tmp/wssd-$mode-$arg-$secs.log"
    (cd "$tmp" && exec valgrind --tool=callgrind --trace-children=yes "$wssd" --config "$tmp/wssd.toml") 2>"$log" &
    server=$!
    wait_port "$port"
    units=$(load "$port" "$arg" "$secs")
    kill "$server"; wait "$server" || true; server=
    worker=$(grep -o "worker 0 pid [0-9]* started" "$log" | head -1 | awk '{print $4}')
    echo "$units $(collected "$log" "$worker")"
}

# The peer of this mode; prints "UNITS INSTRUCTIONS" for a load of SECS.
run_peer() {
    local arg=$1 secs=$2 port log units pid peer
    port=$(free_port)
    case $mode in
        echo|handshake) peer=("$peers/EchoServer" "$port") ;;
        wss) peer=("$peers/EchoServerSSL" "$port" "$tmp/cert.pem" "$tmp/key.pem") ;;
        broadcast) peer=("$peers/BroadcastServer" "$port") ;;
    esac
    [ -x "${peer[0]}" ] || return 1
    log="$tmp/uws-$mode-$arg-$secs.log"
    (cd "$tmp" && exec valgrind --tool=callgrind "${peer[@]}") >/dev/null 2>"$log" &
    server=$!
    wait_port "$port"
    units=$(load "$port" "$arg" "$secs")
    kill "$server"; wait "$server" || true; server=
    pid=$(sed -n 's/^==\([0-9]*\)==.*/\1/p' "$log" | head -1)
    echo "$units $(collected "$log" "$pid")"
}

# Runs SERVER (wssd or peer) for ARG twice and reports the difference
# of the long and the short run.
measure() {
    local who=$1 label=$2 arg=$3 short long
    short=$("run_$who" "$arg" "$secs") || return 0
    long=$("run_$who" "$arg" $((secs * 3))) || return 0
    read -r u1 i1 <<<"$short"
    read -r u2 i2 <<<"$long"
    report "$label" "$arg" $((u2 - u1)) $((i2 - i1))
}

for arg in "${args[@]}"; do
    measure wssd "wssd worker" "$arg"
    measure peer "uWebSockets" "$arg"
done
echo "callgrind files: $tmp" >&2
