#!/usr/bin/env python3
"""Cross-instance broadcast fan-out (issue 13's goal), beside one instance.

Starts redis-server on a free loopback port (no persistence, no system
service) and two wssd instances (1 worker each, route /chat/{room} with
the broadcast handler) whose `[cluster] redis_url` points at it, then runs

  wssd bench -m broadcast -w 4 -c N ws://A/chat/bench ws://B/chat/bench

for each N of BENCH_BCAST: receivers are spread round-robin over the two
instances, the sender (connection 0) is on A, and every receiver must get
every message. The same run against A alone gives the one-instance figures.
The instances and redis-server share the servers' core(s), the load runs
on the others (bench.py's pinning). Server CPU time is that of both
instances plus redis-server, so
deliveries per server CPU-second compare the cluster with one instance.

  --no-redis   start the two instances WITHOUT [cluster] (and no Redis):
               a smoke run of the bench side. Messages then only reach
               receivers on instance A; the report says so (expected vs
               received per URL) and `wssd bench` exits 1.

Uses bench.py's helpers (pinning, CPU accounting, `wssd bench` runs).
Knobs: BENCH_SECS, BENCH_BCAST, BENCH_WSSD (see bench.py), BENCH_REDIS
(the redis-server binary, default: from PATH). Prints a Markdown table.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench.py beside this script)

REDIS = os.environ.get("BENCH_REDIS", shutil.which("redis-server") or "redis-server")


def start_redis(tmp):
    """redis-server on a free 127.0.0.1 port, no persistence; returns (proc, port)."""
    port = B.free_port()
    log = open(os.path.join(tmp, "redis.log"), "w")
    cpus = B.pinning(1)[0]  # beside the instances, apart from the load
    proc = subprocess.Popen(B.pinned(cpus, [REDIS]) + ["--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tmp], stdout=log, stderr=log)
    B.STARTED.append(proc)
    deadline = time.time() + 15
    while not B.accepts(port):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"redis-server did not start; see {tmp}/redis.log")
        time.sleep(0.1)
    return proc, port


def start_instance(tmp, name, redis_port):
    """One wssd instance (1 worker); with [cluster] when redis_port is set."""
    cfg = os.path.join(tmp, f"wssd-{name}.toml")
    with open(cfg, "w") as f:
        f.write('[server]\nlisten = "127.0.0.1:0"\nworkers = 1\n'
                "max_connections_per_worker = 19000\n"
                '[log]\nlevel = "info"\n'
                '[[routes]]\npath = "/chat/{room}"\nhandler = "broadcast"\n')
        if redis_port:
            f.write(f'[cluster]\nredis_url = "redis://127.0.0.1:{redis_port}/0"\n'
                    f'instance_id = "bench-{name}"\n')
    return B.Server(f"wssd {name}", [B.WSSD, "--config", cfg], tmp, workers=1,
                    listen=r"listening on (\S+?)(?:\s|$)")


def row(label, r):
    j = r["json"]
    b = j.get("broadcast") or {}
    d = b.get("last_receiver_delay_us") or {}
    per_url = "; ".join(f"{u['deliveries']:,} of {u['expected_deliveries']:,}"
                        for u in b.get("per_url") or []) or "–"
    return (f"| {label} | {b.get('receivers', 0):,} | {b.get('deliveries', 0):,} of "
            f"{b.get('expected_deliveries', 0):,} | {per_url} | "
            f"{b.get('deliveries_per_s', 0):,.0f} | {B.fmt(B.per_cpu(r))} | "
            f"{d.get('p50', 0) / 1000:.2f} / {d.get('p99', 0) / 1000:.2f} | "
            f"{r['server_cpu_s']:.2f} / {r['client_cpu_s']:.2f} of {r['wall_s']:.1f} s wall | "
            f"{j.get('errors', '?')} (rc {r['rc']}) |")


def main():
    no_redis = "--no-redis" in sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="wssd-bench-cluster.")
    results = []
    try:
        redis, port = (None, None) if no_redis else start_redis(tmp)
        a = start_instance(tmp, "A", port)
        b = start_instance(tmp, "B", port)
        if redis is not None:
            a.extra_pids = [redis.pid]  # Redis's CPU counts as server CPU
        try:
            for n in B.BCAST:
                args = ["-c", str(n), "-m", "broadcast", "-w", "4"]
                results.append(("one instance", B.run_bench(
                    a, f"broadcast {n}", "/chat/bench", args, B.SECS)))
                results.append(("two instances" + (" (no Redis)" if no_redis else ""),
                                B.run_bench(a, f"broadcast {n} x2", "/chat/bench", args,
                                            B.SECS, also=[b])))
        finally:
            a.stop()
            b.stop()
    finally:
        B.cleanup()
    print("| setup | receivers | deliveries | per URL (A; B) | deliveries/s | per server CPU-s "
          "| last-receiver delay p50 / p99 (ms) | CPU s: server / load | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in results:
        print(row(label, r))
    if no_redis:
        print("\nWithout Redis the instances do not share broadcasts: receivers on B get "
              "nothing, which the per-URL column and the errors show.")
    return 0 if all(r["rc"] == 0 for _, r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"bench-cluster: {e}", file=sys.stderr)
        if "wssd" in str(e):
            print("bench-cluster: a daemon without [cluster] support refuses the config "
                  "(see its log); --no-redis runs the bench side without it", file=sys.stderr)
        sys.exit(2)
