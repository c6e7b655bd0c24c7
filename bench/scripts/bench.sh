#!/usr/bin/env bash
# `make bench`: builds the comparison peers, then runs bench/scripts/bench.py,
# which starts the release daemon (1 worker, then 2) and the peers pinned
# with taskset, drives them with `wssd bench`, and writes docs/benchmarks.md.
# The uWebSockets peers are used when ../shared/peers/uws (relative to the
# repository root; BENCH_UWS_DIR overrides) holds them.
# The echo, wss and broadcast suites run their servers side by side and
# interleave them: BENCH_REPEAT repetitions (default 8), each test on each
# server back to back in ABBA order, BENCH_SECS seconds per run (default
# 2); the report pools the repetitions (see bench/scripts/bench.py).
# Other knobs: BENCH_IDLE, BENCH_BCAST, BENCH_OUT, BENCH_PEERS,
# BENCH_UWS_DIR, BENCH_WSSD, BENCH_SUITES (see bench/scripts/bench.py),
# BENCH_PGO=0 (measure the plain release build, below).
# Takes about 9-10 minutes with the defaults (BENCH_SECS=2, BENCH_REPEAT=8;
# 546 s measured here on a quiet machine), plus about 7 for the
# profile-guided build.
set -euo pipefail
cd "$(dirname "$0")/../.."

runner=
cleanup() {
    if [ -n "$runner" ]; then
        kill "$runner" 2>/dev/null || true
        wait "$runner" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in python3 taskset; do
    command -v "$tool" >/dev/null || { echo "make bench: $tool is required" >&2; exit 2; }
done
# The daemon measured is the profile-guided build (scripts/pgo-build.sh,
# `make release-pgo`), as installed with `make install
# BIN=target/pgo/release/wssd`; BENCH_PGO=0, or a missing llvm-tools,
# measures the plain release build instead, and the report says which.
if [ -z "${BENCH_WSSD:-}" ]; then
    if [ "${BENCH_PGO:-1}" != 0 ] && scripts/pgo-build.sh; then
        export BENCH_WSSD=target/pgo/release/wssd
        export BENCH_BUILD="profile-guided release (\`make release-pgo\`, scripts/pgo-build.sh)"
    else
        [ "${BENCH_PGO:-1}" = 0 ] || echo "make bench: no profile-guided build; measuring the plain release build" >&2
        export BENCH_BUILD="release (\`make release\`)"
    fi
fi
[ -x "${BENCH_WSSD:-target/release/wssd}" ] || { echo "make bench: build with 'make release' first" >&2; exit 2; }

# Many connections: the bench and the daemon inherit this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10200 ]; then
    echo "make bench: open-file limit $(ulimit -n) < 10200; the idle run uses ${BENCH_IDLE:-10000}" >&2
    export BENCH_IDLE=$(( $(ulimit -n) - 200 ))
fi

# tokio-tungstenite peer: its own cargo project and target dir.
peer=bench/peers/tokio-echo
if [[ " ${BENCH_PEERS-tokio} " == *" tokio "* ]]; then  # unset: all peers
    echo "make bench: building $peer (release)" >&2
    if ! cargo build --release --quiet --manifest-path "$peer/Cargo.toml" \
            --target-dir "$peer/target" >&2; then
        echo "make bench: $peer did not build; running without it" >&2
    fi
fi

python3 bench/scripts/bench.py &
runner=$!
status=0
wait "$runner" || status=$?
runner=
exit "$status"
