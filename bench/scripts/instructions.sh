#!/usr/bin/env bash
# Instructions per message (user space) of wssd's worker and of
# uWebSockets' EchoServer, counted by valgrind's callgrind: a figure that,
# unlike CPU time on a shared machine, does not move from run to run.
# Kernel time (about 85-90 % of an echo's CPU here, the same syscalls for
# both servers) is not in it; see docs/benchmarks.md.
#
# Usage: bench/scripts/instructions.sh [SIZE...]   (default: 64 16384)
# Needs valgrind, a release build (make release), and for the peer
# BENCH_UWS_DIR (default ../shared/peers/uws). Prints one line per server
# and size; leaves the callgrind files in a temporary directory for
# `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
wssd=${BENCH_WSSD:-$root/target/release/wssd}
uws=${BENCH_UWS_DIR:-$root/../shared/peers/uws}/EchoServer
secs=${BENCH_SECS:-4}
sizes=("${@:-64}")
[ $# -eq 0 ] && sizes=(64 16384)
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

# Runs one echo load of SIZE bytes against PORT; prints the message count.
load() {
    "$wssd" bench "ws://127.0.0.1:$1/echo" --json -t 1 -d "$secs" -c 100 --text -s "$2" |
        tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])'
}

# Instructions of the callgrind output of PID (as valgrind reported them).
collected() {
    grep "^==$2== Collected" "$1" | awk '{gsub(",","",$4); print $4}'
}

report() {
    local label=$1 size=$2 messages=$3 instructions=$4
    printf '%-14s %6s B  %9s messages  %12s instructions  %7s per message\n' \
        "$label" "$size" "$messages" "$instructions" $((instructions / messages))
}

for size in "${sizes[@]}"; do
    # wssd: 1 worker; the worker (a forked child) is what is counted.
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
EOF
    log="$tmp/wssd-$size.log"
    (cd "$tmp" && exec valgrind --tool=callgrind --trace-children=yes "$wssd" --config "$tmp/wssd.toml") 2>"$log" &
    server=$!
    wait_port "$port"
    messages=$(load "$port" "$size")
    kill "$server"; wait "$server" || true; server=
    worker=$(grep -o "worker 0 pid [0-9]* started" "$log" | head -1 | awk '{print $4}')
    report "wssd worker" "$size" "$messages" "$(collected "$log" "$worker")"

    if [ -x "$uws" ]; then
        port=$(free_port)
        log="$tmp/uws-$size.log"
        (cd "$tmp" && exec valgrind --tool=callgrind "$uws" "$port") >/dev/null 2>"$log" &
        server=$!
        wait_port "$port"
        messages=$(load "$port" "$size")
        kill "$server"; wait "$server" || true; server=
        pid=$(sed -n 's/^==\([0-9]*\)==.*/\1/p' "$log" | head -1)
        report "uWebSockets" "$size" "$messages" "$(collected "$log" "$pid")"
    fi
done
echo "callgrind files: $tmp" >&2
