#!/usr/bin/env python3
"""Interleaved A/B rounds: wssd (and optionally a second wssd binary)
against uWebSockets' server of the same load, per server CPU-second.

    bench/scripts/ab.py SIZE SECS ROUNDS [MODE]

MODE is echo (default), handshake or broadcast (1,000 receivers, -w 4).
All servers start once, pinned to CPU 0, and stay up; each round runs
`wssd bench` (pinned to CPU 1) against each of them in turn, the order
reversed every other round (ABBA), so that drift of the machine hits all
alike. Per round it prints each server's units per CPU-second (CPU over
the measurement window, `wssd bench --cpu-pid`); at the end the pooled
figure, the ratio to uWebSockets (or to the last server without it) and
user and system time per unit from /proc (whole run, setup included).

Environment:
  A       the wssd binary (default target/pgo/release/wssd, else target/release/wssd)
  B       a second wssd binary to compare (optional)
  LOAD    the load generator (default: A)
  TLS=1   wss:// (a self-signed P-256 certificate is made for the run)
  MIX=1   after each measured round, run the suite's 16 KiB echo and
          then its handshake load on every server in the round's order,
          unmeasured: the sequence of a `make bench` repetition
  NOUWS=1 leave uWebSockets out; BENCH_UWS_DIR: where its binaries are
          (default ../shared/peers/uws)
  CONNS, W  connections (default 100; broadcast 1,000) and window

A tool for looking into one row by hand (docs/benchmarks.md cites its
runs); `make bench` is the measurement of record.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench.py beside this file: ports, certificate, CPU ticks)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def default_wssd():
    pgo = os.path.join(ROOT, "target/pgo/release/wssd")
    return pgo if os.path.exists(pgo) else os.path.join(ROOT, "target/release/wssd")


def wait_port(port, proc):
    deadline = time.time() + 30
    while not B.accepts(port):
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}")
        if time.time() > deadline:
            raise SystemExit(f"nothing listens on port {port}")
        time.sleep(0.05)


class Lab:
    def __init__(self, mode, tls, tmp):
        self.mode, self.tls, self.tmp, self.procs = mode, tls, tmp, []
        self.cert = self.key = None
        if tls:
            made = B.make_cert(tmp)
            if made is None:
                raise SystemExit("openssl could not make a certificate")
            self.cert, self.key = made

    def spawn(self, label, argv, port):
        proc = subprocess.Popen(["taskset", "-c", "0"] + argv,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port, proc)
        return label, port, proc

    def wssd(self, label, binary):
        port = B.free_port()
        cfg = os.path.join(self.tmp, f"{label}.toml")
        with open(cfg, "w") as f:
            f.write(f'[server]\nlisten = "127.0.0.1:{port}"\nworkers = 1\n'
                    'max_connections_per_worker = 19000\n'
                    '[log]\nlevel = "info"\naccess_log = false\n'
                    '[[routes]]\npath = "/echo"\nhandler = "echo"\n'
                    '[[routes]]\npath = "/chat/{room}"\nhandler = "broadcast"\n')
            if self.tls:
                f.write(f'[tls]\ncert = "{self.cert}"\nkey = "{self.key}"\n')
        return self.spawn(label, [binary, "--config", cfg], port)

    def uws(self, peers):
        port = B.free_port()
        if self.mode == "broadcast":
            argv = [os.path.join(peers, "BroadcastServer"), str(port)]
        elif self.tls:
            argv = [os.path.join(peers, "EchoServerSSL"), str(port), self.cert, self.key]
        else:
            argv = [os.path.join(peers, "EchoServer"), str(port)]
        return self.spawn("uws", argv, port)

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def bench_argv(load, lab, port, path, secs, args):
    url = f"{'wss' if lab.tls else 'ws'}://127.0.0.1:{port}{path}"
    argv = ["taskset", "-c", "1", load, "bench", url, "--json", "-d", str(secs)] + args
    return argv + (["--ca-file", lab.cert] if lab.tls else [])


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    size, secs, rounds = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "echo"
    env = os.environ
    a = env.get("A", default_wssd())
    load = env.get("LOAD", a)
    peers = B.UWS  # BENCH_UWS_DIR, as for make bench
    conns = env.get("CONNS", "1000" if mode == "broadcast" else "100")
    window = env.get("W", "4" if mode == "broadcast" else "1")
    path = "/chat/bench" if mode == "broadcast" else "/echo"
    args = ["-c", conns, "-s", str(size), "--text", "-m", mode, "-w", window]
    with tempfile.TemporaryDirectory(prefix="wssd-ab.") as tmp:
        lab = Lab(mode, env.get("TLS") == "1", tmp)
        try:
            servers = [lab.wssd("A", a)]
            if env.get("B"):
                servers.append(lab.wssd("B", env["B"]))
            if not env.get("NOUWS"):
                servers.append(lab.uws(peers))
            run_rounds(lab, servers, load, path, secs, args, rounds, env.get("MIX") == "1")
        finally:
            lab.stop()


def run_rounds(lab, servers, load, path, secs, args, rounds, mix):
    pooled = {label: [0, 0.0, 0, 0] for label, _, _ in servers}  # units, CPU s, user, system ticks
    for r in range(rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        line = []
        for label, port, proc in order:
            argv = bench_argv(load, lab, port, path, secs, args) + ["--cpu-pid", str(proc.pid)]
            before = B.user_system_ticks(proc.pid)
            out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 120)
            after = B.user_system_ticks(proc.pid)
            j = json.loads(out.stdout)
            mode = j["mode"]
            units = (j["handshakes"] if mode == "handshake"
                     else j["broadcast"]["deliveries"] if mode == "broadcast" else j["messages"])
            cpu = j["server_cpu_s"]
            cpu = sum(cpu.values()) if isinstance(cpu, dict) else cpu
            p = pooled[label]
            p[0] += units
            p[1] += cpu
            p[2] += after[0] - before[0]
            p[3] += after[1] - before[1]
            line.append(f"{label} {units / cpu if cpu else 0:,.0f}")
        print(f"round {r}: " + "  ".join(line), flush=True)
        if mix:
            # The rest of a `make bench` repetition, in its order: each
            # test on every server in turn (bench.py's `interleaved`).
            for extra in (["-c", "100", "-s", "16384", "--text"], ["-c", "100", "-m", "handshake"]):
                for _, port, _ in order:
                    subprocess.run(bench_argv(load, lab, port, "/echo", secs, extra),
                                   capture_output=True, timeout=secs + 120)
    ref = "uws" if "uws" in pooled else servers[-1][0]
    ref_rate = pooled[ref][0] / pooled[ref][1]
    hz = os.sysconf("SC_CLK_TCK")
    for label, (units, cpu, user, system) in pooled.items():
        rate = units / cpu
        print(f"{label}: {rate:,.0f} per CPU-s, {rate / ref_rate:.3f} of {ref}; "
              f"user {user / hz * 1e6 / units:.2f} µs, system {system / hz * 1e6 / units:.2f} µs per unit")


if __name__ == "__main__":
    main()
