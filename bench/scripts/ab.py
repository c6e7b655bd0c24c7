#!/usr/bin/env python3
"""Interleaved A/B rounds of one `make bench` row: wssd (and optionally a
second wssd binary) against uWebSockets' server of the same load, per
server CPU-second, measured exactly as `make bench` measures it.

    bench/scripts/ab.py SIZE SECS ROUNDS [MODE]

MODE is echo (default; SIZE bytes, text), handshake or broadcast (SIZE is
ignored; 1,000 receivers, -w 4). The servers, their configurations, the
pinning, the certificate and each run (`run_bench`) are bench.py's: all
servers start once and stay up, each round runs the row on every server in
turn, the order reversed every other round (ABBA). Per round it prints each
server's units per CPU-second (CPU over the measurement window); at the end
the pooled figure, the ratio to uWebSockets (or to the last server without
it) and user and system time per unit from /proc (whole run, setup
included).

Environment:
  BENCH_WSSD  the wssd binary measured as A and used as load generator
              (default target/pgo/release/wssd, else target/release/wssd)
  B           a second wssd binary to compare (optional)
  TLS=1       wss:// (with the suite's self-signed P-256 certificate)
  MIX=1       each round is a whole `make bench` repetition of the row's
              suite (every test on every server in turn, in the suite's
              order; only the row is counted): what runs before the row
              as in `make bench`
  NOUWS=1     leave uWebSockets out; BENCH_UWS_DIR: where its binaries are
  CONNS, W    connections (default 100; broadcast 1,000) and window

A tool for looking into one row by hand (docs/benchmarks.md cites its
runs); `make bench` is the measurement of record.
"""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if "BENCH_WSSD" not in os.environ:
    pgo = os.path.join(HERE, "..", "..", "target", "pgo", "release", "wssd")
    if os.path.exists(pgo):
        os.environ["BENCH_WSSD"] = os.path.abspath(pgo)
sys.path.insert(0, HERE)
import bench as B  # noqa: E402  (bench.py beside this file: servers, runs, CPU ticks)


def row(mode, size, tls):
    """(name, path, args) of the measured row, named as bench.py names it
    where the suite has it, so that MIX puts it in its place."""
    prefix = "wss " if tls else ""
    conns = os.environ.get("CONNS")
    if mode == "broadcast":
        n = conns or "1000"
        return f"broadcast {n}", "/chat/bench", ["-c", n, "-m", "broadcast",
                                                 "-w", os.environ.get("W", "4")]
    if mode == "handshake":
        return f"{prefix}handshakes", "/echo", ["-c", conns or "100", "-m", "handshake"]
    what = {64: "64 B", 16384: "16 KiB"}.get(size, f"{size} B")
    window = os.environ.get("W")
    name = f"{prefix}echo {what}" + (f" w{window}" if window and window != "1" else "")
    args = ["-c", conns or "100", "--text", "-s", str(size)] + (["-w", window] if window else [])
    return name, "/echo", args


def suite_tests(mode, tls, measured):
    """The tests of one repetition: the measured row in its suite's order
    (replacing the suite's test of that name, or first if it has none)."""
    suite = B.broadcast_tests() if mode == "broadcast" else B.echo_tests("wss " if tls else "")
    if any(name == measured[0] for name, _, _ in suite):
        return [measured if name == measured[0] else (name, p, a) for name, p, a in suite]
    return [measured] + suite


def start_servers(tmp, mode, tls):
    cert = B.make_cert(tmp) if tls else None
    if tls and cert is None:
        raise SystemExit("openssl could not make a certificate")
    servers = [B.start_wssd(1, tmp, tls=cert, label="A")]
    if os.environ.get("B"):
        servers.append(B.start_wssd(1, tmp, tls=cert, label="B", binary=os.environ["B"]))
    if not os.environ.get("NOUWS"):
        key = "uws-broadcast" if mode == "broadcast" else "uws-ssl" if tls else "uws"
        peer = next(p for p in B.PEERS if p.key == key)
        if not peer.available():
            raise SystemExit(f"{peer.binary()} is missing (BENCH_UWS_DIR)")
        servers.append(B.start_peer(peer, tmp, cert))
    return servers


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    size, secs, rounds = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "echo"
    tls = os.environ.get("TLS") == "1"
    measured = row(mode, size, tls)
    tests = suite_tests(mode, tls, measured) if os.environ.get("MIX") == "1" else [measured]
    B.log = lambda msg: None  # run_bench's per-run lines; this prints its own
    with tempfile.TemporaryDirectory(prefix="wssd-ab.") as tmp:
        servers = start_servers(tmp, mode, tls)
        try:
            report(servers, run_rounds(servers, tests, measured[0], secs, rounds))
        finally:
            for s in servers:
                s.stop()


def run_rounds(servers, tests, name, secs, rounds):
    """Pooled (units, window CPU s, user ticks, system ticks) of the row per
    server label."""
    pooled = {s.label: [0, 0.0, 0, 0] for s in servers}
    for rep in range(1, rounds + 1):
        order = B.rep_order(servers, rep)
        line = []
        for test, path, args in tests:
            for srv in order:
                others = [o for o in servers if o is not srv]
                before = B.user_system_ticks(srv.proc.pid)
                res = B.run_bench(srv, test, path, args, secs, idle=others)
                after = B.user_system_ticks(srv.proc.pid)
                if test != name:
                    continue
                units = B.units(res)
                p = pooled[srv.label]
                p[0] += units
                p[1] += res["server_cpu_s"]
                p[2] += after[0] - before[0]
                p[3] += after[1] - before[1]
                line.append(f"{srv.label} {units / res['server_cpu_s']:,.0f}"
                            if res["server_cpu_s"] else f"{srv.label} failed (rc {res['rc']})")
        print(f"round {rep}: " + "  ".join(line), flush=True)
    return pooled


def report(servers, pooled):
    ref = "uWebSockets" if "uWebSockets" in pooled else servers[-1].label
    ref_rate = pooled[ref][0] / pooled[ref][1]
    for label, (units, cpu, user, system) in pooled.items():
        rate = units / cpu
        print(f"{label}: {rate:,.0f} per CPU-s, {rate / ref_rate:.3f} of {ref}; "
              f"user {user / B.TICK * 1e6 / units:.2f} µs, "
              f"system {system / B.TICK * 1e6 / units:.2f} µs per unit")


if __name__ == "__main__":
    main()
