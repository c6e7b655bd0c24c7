#!/usr/bin/env bash
# `make release-pgo`: the release daemon optimised with a profile of its own
# hot paths (profile-guided optimisation, rustc's -Cprofile-generate and
# -Cprofile-use), written to target/pgo/release/wssd.
#
# Why: wssd's per-message path runs through the loop, the session, the
# frame reader and (over TLS) rustls in a few hundred instructions spread
# over a 4 MB text segment, fetched anew after every system call.
# With the profile the compiler lays the hot code out together and keeps
# cold paths out of it: user-space CPU per message of a 64 B echo 0.52 ->
# 0.34 us, of a wss:// 64 B echo 3.27 -> 3.10 us (docs/benchmarks.md,
# "Profile-guided optimisation"). `make bench` measures this build.
#
# Steps: an instrumented build (target/pgo/instrumented), the training run
# (`make bench`'s runner, bench/scripts/bench.py, short and without peers:
# the instrumented daemon on loopback, plain, TLS, permessage-deflate and
# with 2 workers, under echo 64 B and 16 KiB, pipelined echo, handshakes,
# broadcast to 1,000 and idle connections), llvm-profdata merge, the
# optimised build. About 7 minutes on 2 CPUs from scratch. Needs rustup's
# llvm-tools component (the llvm-profdata of rustc's own LLVM) and what
# `make bench` needs (python3, taskset, openssl). Knobs: PGO_SECS seconds
# per training load (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="$root/target/pgo"
secs=${PGO_SECS:-1}

die() { echo "make release-pgo: $*" >&2; exit 2; }

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[ -x "$profdata" ] || die "llvm-profdata of rustc's LLVM is missing: rustup component add llvm-tools"
for tool in python3 openssl taskset; do
    command -v "$tool" >/dev/null || die "$tool is required for the training run"
done

rm -rf "$out/raw"
mkdir -p "$out/raw"

echo "make release-pgo: instrumented build" >&2
CARGO_TARGET_DIR="$out/instrumented" RUSTFLAGS="-Cprofile-generate=$out/raw" \
    cargo build --release --quiet -p wssd-cli
bin="$out/instrumented/release/wssd"
# The build scripts wrote profiles too; only the training run's count.
rm -rf "$out/raw" && mkdir -p "$out/raw"

# The training run is `make bench`'s runner, short and without peers: the
# same daemon configurations (1 and 2 workers, TLS, permessage-deflate) and
# the same loads, driven by the instrumented binary's own `wssd bench`. It
# stops every daemon with SIGTERM, so they drain and exit normally, which
# writes their profiles.
echo "make release-pgo: training run (bench/scripts/bench.py, log in target/pgo/train.log)" >&2
BENCH_WSSD="$bin" BENCH_BUILD="instrumented, for training" BENCH_PEERS="" BENCH_OUT=- \
    BENCH_SECS="$secs" BENCH_REPEAT=2 BENCH_IDLE=200 BENCH_BCAST=1000 \
    python3 bench/scripts/bench.py >"$out/train.log" 2>&1 ||
    die "the training run failed: see target/pgo/train.log"

"$profdata" merge -o "$out/wssd.profdata" "$out"/raw/*.profraw

echo "make release-pgo: optimised build" >&2
CARGO_TARGET_DIR="$out" \
    RUSTFLAGS="-Cprofile-use=$out/wssd.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
    cargo build --release --quiet -p wssd-cli
echo "make release-pgo: $out/release/wssd" >&2
