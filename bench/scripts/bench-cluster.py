#!/usr/bin/env python3
"""Cross-instance broadcast fan-out (issue 13's goal), beside one instance.

Starts redis-server on a free loopback port (no persistence, no system
service), two wssd instances A and B (1 worker each, route /chat/{room}
with the broadcast handler) whose `[cluster] redis_url` points at it, and
two more instances without `[cluster]`: S (1 worker) and S2 (2 workers).
For each N of BENCH_BCAST and each of BENCH_REPEAT repetitions it runs,
one after the other and with the same arguments:

  one instance            wssd bench -m broadcast -w 4 -c N ws://S/chat/bench
  one instance, 2 workers wssd bench -m broadcast -w 4 -c N ws://S2/chat/bench
  two instances           wssd bench -m broadcast -w 4 -c N ws://A/chat/bench ws://B/chat/bench

(`-c N` connections: connection 0 sends and receives, so N receivers; in
the two-instance run they are spread round-robin over A and B, the sender
on A, and every receiver must get every message.) The order alternates
per repetition (ABBA): odd repetitions run the setups in the order above,
even ones in the reverse order, so that a drift of the machine's load over
a run weighs on every setup alike.

BENCH_PLACEMENT says where the processes run (taskset; each instance's
master, workers and cluster helper inherit its CPUs):

  spread (default)  each instance on a core of its own, as on separate
                    machines. 2 CPUs: A and Redis on CPU 0; B on CPU 1
                    with the load generator (which took a quarter to a
                    half of that core at 1,000 receivers and -w 4, more
                    at -w 32: B is not alone there).
                    3 CPUs: A on 0, B on 1, the load and Redis on 2.
                    4 or more: A on 0, B on 1, Redis on 2, the load on 3
                    and up. S (the one-instance baseline) runs where A
                    does, with the load where it is in the two-instance
                    run (2 CPUs: server on CPU 0, load on CPU 1); S2's two
                    workers may use A's and B's cores.
  shared            the older placement: every server process (S, S2, A,
                    B and Redis) on the servers' core of bench.py's
                    pinning (CPU 0), the load on the others; S2's two
                    workers then share the one core, which shows what
                    splitting the receivers over two event loops on one
                    core costs without Redis.

Server CPU is measured per process tree from /proc:
the instances (S; A + B with their masters, workers and cluster helpers)
and redis-server apart. The report gives deliveries per instance
CPU-second (the goal's figure) and per CPU-second with Redis counted too,
and the ratio two instances / one instance of each repetition: the goal
is that the second instance costs no more than 20 % of the one-instance
figure, i.e. a ratio of at least 0.80. It also pools the repetitions: per
setup, all deliveries over all instance CPU seconds of all repetitions,
and the ratio of those pooled figures, beside the median and range of the
per-repetition ratios. Per two-instance run it reports each cluster
helper's CPU time and context switches (all its threads, from /proc) per
broadcast message. BENCH_WINDOW (default 4) sets `-w`.

  --no-redis   start A and B WITHOUT [cluster] (and no Redis): a smoke run
               of the bench side. Messages then only reach receivers on
               instance A; the report says so (expected vs received per
               URL) and `wssd bench` exits 1.

Uses bench.py's helpers (pinning, CPU accounting, `wssd bench` runs).
Knobs: BENCH_SECS, BENCH_BCAST, BENCH_REPEAT, BENCH_WSSD (see bench.py),
BENCH_WINDOW, BENCH_PLACEMENT, BENCH_REDIS (the redis-server binary,
default: from PATH). Prints a Markdown table and the ratios.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench.py beside this script)

REDIS = os.environ.get("BENCH_REDIS", shutil.which("redis-server") or "redis-server")
WINDOW = os.environ.get("BENCH_WINDOW", "4")
PLACEMENT = os.environ.get("BENCH_PLACEMENT", "spread")


class Placement:
    """CPUs (taskset -c lists, None: unpinned) of each process of a run:
    the instances S, S2, A, B, redis-server and the load generator (with
    its thread count), and a sentence for the report."""

    def __init__(self, kind, ncpu=B.NCPU):
        if kind == "shared":
            srv, load, self.threads, _ = B.pinning(1)
            self.S = self.S2 = self.A = self.B = self.redis = srv
            self.load = load
            self.note = (f"shared: every server process (instances S, S2, A, B with their "
                         f"masters, workers and cluster helpers, and Redis) on CPU {srv}, "
                         f"the load on CPU {load}" if srv else "shared: 1 CPU, nothing pinned")
        elif kind == "spread":
            self.threads = 1
            if ncpu < 2:
                self.S = self.S2 = self.A = self.B = self.redis = self.load = None
                self.note = "spread: 1 CPU, nothing pinned"
                return
            self.S, self.S2, self.A, self.B = "0", "0,1", "0", "1"
            if ncpu == 2:
                self.redis, self.load = "0", "1"
                where = "Redis on CPU 0 with A; the load on CPU 1 with B"
            elif ncpu == 3:
                self.redis, self.load = "2", "2"
                where = "Redis and the load on CPU 2"
            else:
                self.redis = "2"
                self.load = f"3-{ncpu - 1}" if ncpu > 4 else "3"
                self.threads = min(ncpu - 3, 2)
                where = f"Redis on CPU 2, the load on CPU {self.load}"
            self.note = (f"spread: instance A (master, worker, cluster helper) on CPU 0, "
                         f"instance B on CPU 1, {where}; the one-instance baseline S on "
                         f"CPU 0 with the load on CPU {self.load}; S2's 2 workers on CPUs 0,1")
        else:
            raise RuntimeError(f"BENCH_PLACEMENT={kind!r}: use spread or shared")

    def pin(self, cpus):
        """bench.Server's `pin` for a server on `cpus` driven by this load."""
        return cpus, self.load, self.threads, self.note


def start_redis(tmp, place):
    """redis-server on a free 127.0.0.1 port, no persistence; returns (proc, port)."""
    port = B.free_port()
    log = open(os.path.join(tmp, "redis.log"), "w")
    proc = subprocess.Popen(B.pinned(place.redis, [REDIS]) + ["--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tmp], stdout=log, stderr=log)
    B.STARTED.append(proc)
    deadline = time.time() + 15
    while not B.accepts(port):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"redis-server did not start; see {tmp}/redis.log")
        time.sleep(0.1)
    return proc, port


def start_instance(tmp, name, redis_port, place, workers=1):
    """One wssd instance; with [cluster] when redis_port is set; on the
    CPUs `place` gives it (named S, S2, A or B)."""
    cfg = os.path.join(tmp, f"wssd-{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:0"\nworkers = {workers}\n'
                "max_connections_per_worker = 19000\n"
                '[log]\nlevel = "info"\n'
                '[[routes]]\npath = "/chat/{room}"\nhandler = "broadcast"\n')
        if redis_port:
            f.write(f'[cluster]\nredis_url = "redis://127.0.0.1:{redis_port}/0"\n'
                    f'instance_id = "bench-{name}"\n')
    return B.Server(f"wssd {name}", [B.WSSD, "--config", cfg], tmp, workers=workers,
                    listen=r"listening on (\S+?)(?:\s|$)", pin=place.pin(getattr(place, name)))


def wait_cluster(server):
    """Waits until the instance's cluster helper is connected to Redis (its log says so)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(server.errlog) as f:
            if "cluster: connected to Redis" in f.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{server.label}: the cluster helper did not connect; see {server.errlog}")


def helper_pids(server):
    """The cluster helper processes of an instance (process title
    `wssd: cluster process`, under its master)."""
    pids = []
    for p in B.tree(server.proc.pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if f.read().startswith(b"wssd: cluster process"):
                    pids.append(p)
        except OSError:
            pass
    return pids


def helper_sample(pid):
    """(CPU s, voluntary + involuntary context switches) of one process's
    live threads, from /proc (CPU time from schedstat, in nanoseconds:
    the clock ticks of /proc/PID/stat are too coarse for a helper's
    fraction of a second)."""
    cpu, switches = 0.0, 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tasks = []
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                cpu += int(f.read().split()[0]) / 1e9
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return cpu, switches


def run_two(a, b, n, args):
    """The two-instance run, with each cluster helper's CPU s and context
    switches over it (r["helpers"]: name -> [CPU s, switches])."""
    helpers = {name: helper_pids(s) for name, s in (("A", a), ("B", b))}
    before = {name: [helper_sample(p) for p in pids] for name, pids in helpers.items()}
    r = B.run_bench(a, f"broadcast {n} two", "/chat/bench", args, B.SECS, also=[b])
    r["helpers"] = {}
    for name, pids in helpers.items():
        after = [helper_sample(p) for p in pids]
        r["helpers"][name] = [sum(x[0] - y[0] for x, y in zip(after, before[name])),
                              sum(x[1] - y[1] for x, y in zip(after, before[name]))]
    return r


def figures(r, instances, redis):
    """(instance CPU s, Redis CPU s, deliveries per instance CPU-s, per CPU-s with Redis)."""
    by_pid = r["server_cpu_by_pid"]
    inst = sum(by_pid.get(p.proc.pid, 0.0) for p in instances)
    red = by_pid.get(redis.pid, 0.0) if redis is not None else 0.0
    n = (r["json"].get("broadcast") or {}).get("deliveries", 0)
    return inst, red, (n / inst if inst > 0 else 0.0), (n / (inst + red) if inst + red > 0 else 0.0)


def row(label, r, instances, redis):
    j = r["json"]
    b = j.get("broadcast") or {}
    d = b.get("last_receiver_delay_us") or {}
    inst, red, per_inst, per_all = figures(r, instances, redis)
    per_url = "; ".join(f"{u['deliveries']:,} of {u['expected_deliveries']:,}"
                        for u in b.get("per_url") or []) or "–"
    return (f"| {label} | {b.get('receivers', 0):,} | {b.get('deliveries', 0):,} of "
            f"{b.get('expected_deliveries', 0):,} | {per_url} | "
            f"{b.get('deliveries_per_s', 0):,.0f} | {B.fmt(per_inst)} | {B.fmt(per_all)} | "
            f"{d.get('p50', 0) / 1000:.2f} / {d.get('p99', 0) / 1000:.2f} | "
            f"{inst:.2f} / {red:.2f} / {r['client_cpu_s']:.2f} of {r['wall_s']:.1f} s wall | "
            f"{j.get('errors', '?')} (rc {r['rc']}) |")


def pooled_report(runs, one, one2, two, redis):
    """Per N: each setup's pooled figures (all deliveries / all instance
    CPU s of every repetition), the ratio of the pooled figures, and the
    median and range of the per-repetition ratios."""
    print("\n| receivers | setup | repetitions | deliveries | instance CPU s | Redis CPU s "
          "| pooled per instance CPU-s | pooled per CPU-s with Redis |")
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for n in sorted({run[0] for run in runs}):
        mine = [run for run in runs if run[0] == n]
        pooled = {}
        for i, (label, inst, red) in enumerate((("one instance", one, None),
                                                ("one instance, 2 workers", one2, None),
                                                ("two instances", two, redis))):
            rs = [run[2 + i] for run in mine]
            deliveries = sum((r["json"].get("broadcast") or {}).get("deliveries", 0) for r in rs)
            cpu = [figures(r, inst, red) for r in rs]
            inst_s, red_s = sum(c[0] for c in cpu), sum(c[1] for c in cpu)
            per_inst = deliveries / inst_s if inst_s > 0 else 0.0
            per_all = deliveries / (inst_s + red_s) if inst_s + red_s > 0 else 0.0
            pooled[label] = (per_inst, per_all)
            print(f"| {n:,} | {label} | {len(rs)} | {deliveries:,} | {inst_s:.2f} | {red_s:.2f} "
                  f"| {B.fmt(per_inst)} | {B.fmt(per_all)} |")
        per_rep = [figures(r2, two, redis)[2] / figures(r1, one, None)[2]
                   for _, _, r1, _, r2 in mine if figures(r1, one, None)[2] > 0]
        p1, p2 = pooled["one instance"], pooled["two instances"]
        if p1[0] > 0 and per_rep:
            summary.append(
                f"* {n:,} receivers: two / one instance, pooled: **{p2[0] / p1[0]:.3f}** per "
                f"instance CPU-s ({p2[1] / p1[1]:.3f} with Redis's CPU counted; the goal: "
                f">= 0.80); per repetition: median {statistics.median(per_rep):.3f}, range "
                f"{min(per_rep):.3f}-{max(per_rep):.3f}, at or above 0.80 in "
                f"{sum(x >= 0.8 for x in per_rep)} of {len(per_rep)}")
    print()
    print("\n".join(summary))


def helpers_report(runs):
    """Each cluster helper's CPU time and context switches per broadcast
    message of the two-instance runs, per repetition and pooled."""
    rows, totals = [], {"A": [0.0, 0, 0], "B": [0.0, 0, 0]}
    for n, rep, _, _, r2 in runs:
        sent = (r2["json"].get("broadcast") or {}).get("messages_sent", 0)
        h = r2.get("helpers") or {}
        if not sent or not h:
            continue
        cells = []
        for name in ("A", "B"):
            cpu, sw = h.get(name, [0.0, 0])
            totals[name][0] += cpu
            totals[name][1] += sw
            totals[name][2] += sent
            cells.append(f"{cpu / sent * 1e6:.0f} | {sw / sent:.2f}")
        rows.append(f"| {n:,} | #{rep} | {sent:,} | " + " | ".join(cells) + " |")
    if not rows:
        return
    print("\n| receivers | repetition | messages | helper A: CPU µs / message | A: context "
          "switches / message | helper B: CPU µs / message | B: context switches / message |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    cells = [f"{t[0] / t[2] * 1e6:.0f} | {t[1] / t[2]:.2f}" if t[2] else "– | –"
             for t in (totals["A"], totals["B"])]
    print(f"| all | pooled | {totals['A'][2]:,} | " + " | ".join(cells) + " |")


def main():
    no_redis = "--no-redis" in sys.argv[1:]
    place = Placement(PLACEMENT)
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="wssd-bench-cluster.")
    runs = []  # (n, rep, one instance, one instance with 2 workers, two instances)
    redis = None
    try:
        redis, port = (None, None) if no_redis else start_redis(tmp, place)
        one = start_instance(tmp, "S", None, place)
        one2 = start_instance(tmp, "S2", None, place, workers=2)
        a = start_instance(tmp, "A", port, place)
        b = start_instance(tmp, "B", port, place)
        try:
            if redis is not None:
                wait_cluster(a)
                wait_cluster(b)
                a.extra_pids = [redis.pid]  # Redis's CPU, measured apart
            args = lambda n: ["-c", str(n), "-m", "broadcast", "-w", WINDOW]
            for n in B.BCAST:
                for rep in range(1, B.REPEAT + 1):
                    setups = [
                        ("one", lambda: B.run_bench(one, f"broadcast {n} one", "/chat/bench",
                                                    args(n), B.SECS)),
                        ("one2", lambda: B.run_bench(one2, f"broadcast {n} one 2w",
                                                     "/chat/bench", args(n), B.SECS)),
                        ("two", lambda: run_two(a, b, n, args(n))),
                    ]
                    if rep % 2 == 0:
                        setups.reverse()  # ABBA: even repetitions in reverse order
                    got = {name: run() for name, run in setups}
                    runs.append((n, rep, got["one"], got["one2"], got["two"]))
        finally:
            for srv in (one, one2, a, b):
                srv.stop()
    finally:
        B.cleanup()
    two_label = "two instances" + (" (no Redis)" if no_redis else "")
    load_after = os.getloadavg()
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {B.machine()}; "
          f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {', '.join(f'{x:.2f}' for x in load_after)}; placement: {place.note}; "
          f"{B.SECS:g} s per run; -w {WINDOW}\n")
    print("| setup | receivers | deliveries | per URL (A; B) | deliveries/s | per instance CPU-s "
          "| per CPU-s with Redis | last-receiver delay p50 / p99 (ms) "
          "| CPU s: instances / Redis / load | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, rep, r1, r12, r2 in runs:
        print(row(f"one instance (#{rep})", r1, [one], None))
        print(row(f"one instance, 2 workers (#{rep})", r12, [one2], None))
        print(row(f"{two_label} (#{rep})", r2, [a, b], redis))
    print("\n| receivers | repetition | two / one, per instance CPU-s (the goal: ≥ 0.80) "
          "| two / one, per CPU-s with Redis | one 2 workers / one | two / one 2 workers |")
    print("|---|---|---|---|---|---|")
    ratio = lambda x, y: f"{x / y:.2f}" if y > 0 else "–"
    for n, rep, r1, r12, r2 in runs:
        f1, f12 = figures(r1, [one], None), figures(r12, [one2], None)
        f2 = figures(r2, [a, b], redis)
        print(f"| {n:,} | #{rep} | {ratio(f2[2], f1[2])} | {ratio(f2[3], f1[3])} | "
              f"{ratio(f12[2], f1[2])} | {ratio(f2[2], f12[2])} |")
    pooled_report(runs, [one], [one2], [a, b], redis)
    helpers_report(runs)
    if no_redis:
        print("\nWithout Redis the instances do not share broadcasts: receivers on B get "
              "nothing, which the per-URL column and the errors show.")
    with open(os.path.join(tmp, "results.json"), "w") as f:
        json.dump([{"n": n, "rep": rep, "one": r1, "one_2w": r12, "two": r2}
                   for n, rep, r1, r12, r2 in runs], f)
    B.log(f"raw results: {tmp}/results.json")
    return 0 if all(r["rc"] == 0 for run in runs for r in run[2:]) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"bench-cluster: {e}", file=sys.stderr)
        sys.exit(2)
