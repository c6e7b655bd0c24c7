#!/usr/bin/env bash
# `make release-pgo`: the release daemon optimised with a profile of its own
# hot paths (profile-guided optimisation, rustc's -Cprofile-generate and
# -Cprofile-use), written to target/pgo/release/wssd.
#
# Why: wssd's per-message path runs through the loop, the session, the
# frame reader and the `openssl` crate in a few hundred instructions spread
# over a 4 MB text segment, fetched anew after every system call.
# With the profile the compiler lays the hot code out together and keeps
# cold paths out of it: user-space CPU per message of a 64 B echo 0.52 ->
# 0.34 us, of a wss:// 64 B echo 3.27 -> 3.10 us (docs/benchmarks.md,
# "Profile-guided optimisation"). `make bench` measures this build.
#
# Steps: an instrumented build (target/pgo/instrumented), the training run
# (the instrumented daemon on loopback, plain, TLS and permessage-deflate,
# driven by its own `wssd bench`: echo 64 B and 16 KiB, pipelined echo,
# handshakes, broadcast to 1,000), llvm-profdata merge, the optimised build.
# About 7 minutes on 2 CPUs. Needs rustup's llvm-tools component (the
# llvm-profdata of rustc's own LLVM) and python3 and openssl for the
# training run. Knobs: PGO_SECS seconds per training load (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="$root/target/pgo"
secs=${PGO_SECS:-2}

die() { echo "make release-pgo: $*" >&2; exit 2; }

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[ -x "$profdata" ] || die "llvm-profdata of rustc's LLVM is missing: rustup component add llvm-tools"
for tool in python3 openssl; do
    command -v "$tool" >/dev/null || die "$tool is required for the training run"
done

rm -rf "$out/raw" "$out/train"
mkdir -p "$out/raw" "$out/train"

echo "make release-pgo: instrumented build" >&2
CARGO_TARGET_DIR="$out/instrumented" RUSTFLAGS="-Cprofile-generate=$out/raw" \
    cargo build --release --quiet -p wssd-cli
bin="$out/instrumented/release/wssd"
# The build scripts wrote profiles too; only the training run's count.
rm -rf "$out/raw" && mkdir -p "$out/raw"

# --- training run -----------------------------------------------------------
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cert="$out/train/cert.pem" key="$out/train/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$key" -out "$cert" 2>/dev/null || die "openssl could not make a certificate"

# start_daemon NAME PORT EXTRA_SERVER_LINES EXTRA_SECTIONS: a daemon with the
# echo and broadcast routes that `make bench` uses.
start_daemon() {
    local cfg="$out/train/$1.toml"
    printf '[server]\nlisten = "127.0.0.1:%s"\nworkers = 1\nmax_connections_per_worker = 19000\n%b[log]\nlevel = "warn"\naccess_log = false\n[[routes]]\npath = "/echo"\nhandler = "echo"\n[[routes]]\npath = "/chat/{room}"\nhandler = "broadcast"\n%b' \
        "$2" "$3" "$4" > "$cfg"
    "$bin" --config "$cfg" 2>>"$out/train/daemon.log" &
    pids+=($!)
}

# wait_port PORT: until the daemon accepts connections (at most 30 s).
wait_port() {
    python3 - "$1" <<'EOF' || die "the instrumented daemon did not start (see target/pgo/train/daemon.log)"
import socket, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}

plain=$(free_port) tls=$(free_port) deflate=$(free_port)
start_daemon plain "$plain" "" ""
start_daemon tls "$tls" "" "[tls]\ncert = \"$cert\"\nkey = \"$key\"\n"
start_daemon deflate "$deflate" 'compression = "deflate"\n' ""
for port in "$plain" "$tls" "$deflate"; do wait_port "$port"; done

load() { "$bin" bench "$@" -d "$secs" >/dev/null || die "training load failed: wssd bench $*"; }
echo "make release-pgo: training run" >&2
load "ws://127.0.0.1:$plain/echo" -c 100 --text -s 64
load "ws://127.0.0.1:$plain/echo" -c 100 --text -s 16384
load "ws://127.0.0.1:$plain/echo" -c 100 --text -s 64 -w 32
load "ws://127.0.0.1:$plain/echo" -c 100 -m handshake
load "ws://127.0.0.1:$plain/chat/train" -c 1000 -m broadcast -w 4
load "wss://127.0.0.1:$tls/echo" -c 100 --text -s 64 --ca-file "$cert"
load "wss://127.0.0.1:$tls/echo" -c 100 --text -s 16384 --ca-file "$cert"
load "wss://127.0.0.1:$tls/echo" -c 100 -m handshake --ca-file "$cert"
load "ws://127.0.0.1:$deflate/echo" -c 100 --text -s 16384 --deflate --payload json

# SIGTERM: the daemons drain and exit normally, which writes the profiles.
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || die "a training daemon exited with status $?"; done
pids=()

"$profdata" merge -o "$out/wssd.profdata" "$out"/raw/*.profraw

echo "make release-pgo: optimised build" >&2
CARGO_TARGET_DIR="$out" \
    RUSTFLAGS="-Cprofile-use=$out/wssd.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
    cargo build --release --quiet -p wssd-cli
echo "make release-pgo: $out/release/wssd" >&2
