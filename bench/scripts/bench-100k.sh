#!/usr/bin/env bash
# 100,000 idle connections against one daemon (not part of `make bench`:
# it needs about 200,000 file descriptors in total and a minute).
#
# One process may open at most `ulimit -Hn` files, so the load is split
# over P bench processes of N connections each, sharing --source-addrs A
# source addresses (127.0.0.2 ...), and the daemon runs W workers of at
# most N+1000 connections each. Defaults: P=6, N=17000, A=5, W=6.
# Prints the connections each process held and the daemon's memory.
set -euo pipefail
cd "$(dirname "$0")/../.."

P=${P:-6}
N=${N:-17000}
A=${A:-5}
W=${W:-6}
HOLD=${HOLD:-15}
BIN=./target/release/wssd
[ -x "$BIN" ] || { echo "build with 'make release' first" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d /tmp/wssd-100k.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$tmp/wssd.toml" <<EOF
[server]
listen = "127.0.0.1:0"
workers = $W
max_connections_per_worker = $((N + 1000))
[log]
level = "info"
[[routes]]
path = "/echo"
handler = "echo"
EOF

"$BIN" --config "$tmp/wssd.toml" 2> "$tmp/wssd.log" &
daemon=$!
pids+=("$daemon")
addr=
for _ in $(seq 50); do
    addr=$(grep -o 'listening on [0-9.:]*' "$tmp/wssd.log" | awk '{print $3}' || true)
    [ -n "$addr" ] && break
    sleep 0.2
done
[ -n "$addr" ] || { echo "daemon did not start" >&2; cat "$tmp/wssd.log" >&2; exit 1; }
sleep 0.5

# RSS (KiB) of the daemon and all its descendants.
tree_rss() {
    local total=0 p
    for p in $1 $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        total=$((total + $(awk '/^Rss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)))
    done
    echo "$total"
}
base=$(tree_rss "$daemon")

echo "100k: $P processes x $N idle connections, $A source addresses, $W workers, hold ${HOLD}s" >&2
start=$(date +%s)
for i in $(seq "$P"); do
    "$BIN" bench "ws://$addr/echo" -m idle -c "$N" -d "$HOLD" --source-addrs "$A" \
        --connect-timeout 60 --json > "$tmp/b$i.json" 2> "$tmp/b$i.err" &
    pids+=("$!")
done
# Sample while every process holds: poll the daemon's connection count.
peak=0 rss=0 tcpmem=0
deadline=$((start + HOLD + 120))
while [ "$(date +%s)" -lt "$deadline" ]; do
    n=$(ss -Htn state established "( sport = :${addr##*:} )" 2>/dev/null | wc -l)
    if [ "$n" -gt "$peak" ]; then
        peak=$n
        rss=$(tree_rss "$daemon")
        tcpmem=$(awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat)
        echo "  $(( $(date +%s) - start )) s: $n connections established on the server side" >&2
    fi
    running=0
    for p in "${pids[@]:1}"; do kill -0 "$p" 2>/dev/null && running=1; done
    [ "$running" = 1 ] || break
    sleep 2
done
wait "${pids[@]:1}" || true

held=0
for i in $(seq "$P"); do
    c=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["connected"], j["errors"])' "$tmp/b$i.json" 2>/dev/null || echo "0 ?")
    echo "  bench $i: connected/errors $c" >&2
    held=$((held + ${c%% *}))
done
echo "held $held connections (peak $peak on the server side)"
if [ "$peak" -gt 0 ]; then
    echo "daemon RSS: baseline $base KiB, at peak $rss KiB, $(( (rss - base) * 1024 / peak )) bytes per connection"
    echo "kernel TCP memory at peak (both ends, all sockets): $tcpmem pages"
fi
