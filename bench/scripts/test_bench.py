#!/usr/bin/env python3
"""Tests of bench.py's bookkeeping (no servers, no load): the ABBA order,
which processes a run counts, the pooled figures and paired ratios of the
report, and the hand-written tail that write_report keeps.

Run: python3 bench/scripts/test_bench.py (part of `make test`).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench.py beside this file)


def run(server, test, rep, units, cpu, elapsed, errors=0):
    """A result dict as run_bench makes it (only the fields the report reads)."""
    return {
        "server": server, "workers": 1, "test": test, "rc": 0, "rep": rep,
        "server_cpu_s": cpu, "wall_s": elapsed + 0.1, "client_cpu_s": 1.0,
        "idle_cpu_s": 0.0, "idle_servers": 2, "pin": "server on CPU 0, load on CPU 1",
        "json": {"messages": units, "messages_per_s": units / elapsed, "elapsed_s": elapsed,
                 "errors": errors, "latency_us": {"p50": 1000, "p99": 2000}},
    }


class Order(unittest.TestCase):
    def test_abba(self):
        servers = ["wssd", "uws", "tokio"]
        self.assertEqual([B.rep_order(servers, r) for r in (1, 2, 3, 4)], [
            ["wssd", "uws", "tokio"], ["tokio", "uws", "wssd"],
            ["wssd", "uws", "tokio"], ["tokio", "uws", "wssd"]])

    def test_interleaved_runs_each_test_back_to_back_and_counts_only_the_server_under_test(self):
        calls = []

        class Fake:
            def __init__(self, label):
                self.label = label

        def fake_run_bench(server, test, path, args, secs, also=(), idle=()):
            calls.append((test, server.label, sorted(s.label for s in idle)))
            return {"server": server.label, "test": test}

        real, real_repeat = B.run_bench, B.REPEAT
        B.run_bench, B.REPEAT = fake_run_bench, 2
        try:
            results = []
            B.interleaved([Fake("a"), Fake("b"), Fake("c")], [("t1", "/", []), ("t2", "/", [])], results, "x")
        finally:
            B.run_bench, B.REPEAT = real, real_repeat
        self.assertEqual([(t, s) for t, s, _ in calls], [
            ("t1", "a"), ("t1", "b"), ("t1", "c"), ("t2", "a"), ("t2", "b"), ("t2", "c"),
            ("t1", "c"), ("t1", "b"), ("t1", "a"), ("t2", "c"), ("t2", "b"), ("t2", "a")])
        for _, server, idle in calls:
            self.assertEqual(idle, sorted({"a", "b", "c"} - {server}))
        self.assertEqual([r["rep"] for r in results], [1] * 6 + [2] * 6)


class CpuAccounting(unittest.TestCase):
    def test_counts_the_busy_tree_not_an_idle_neighbour(self):
        # A shell whose child spins (the tree counts descendants), and a
        # sleeping neighbour (an idle server beside the one under load).
        busy = subprocess.Popen(["sh", "-c", "while :; do :; done & wait"],
                                start_new_session=True)  # killed as a group below
        idle = subprocess.Popen(["sleep", "600"])
        try:
            deadline = time.time() + 60
            while len(B.tree(busy.pid)) < 2 and time.time() < deadline:
                time.sleep(0.05)
            idle_before, busy_before = B.cpu_ticks(idle.pid), B.cpu_ticks(busy.pid)
            while B.cpu_ticks(busy.pid) - busy_before < 20 and time.time() < deadline:
                time.sleep(0.05)
            self.assertGreaterEqual(B.cpu_ticks(busy.pid) - busy_before, 20,
                                    "the spinning child's CPU time was not counted")
            self.assertEqual(B.cpu_ticks(idle.pid), idle_before)
        finally:
            os.killpg(busy.pid, signal.SIGKILL)  # the shell and its spinning child
            for p in (busy, idle):
                p.kill()
                p.wait()


class Pooling(unittest.TestCase):
    def test_pooled_is_total_units_over_total_cpu(self):
        rs = [run("w", "t", 1, 100, 1.0, 1.0), run("w", "t", 2, 300, 2.0, 3.0)]
        thr, eff = B.pooled(rs)
        self.assertAlmostEqual(eff, 400 / 3.0)   # not the mean of 100 and 150
        self.assertAlmostEqual(thr, 400 / 4.0)
        self.assertEqual(B.pooled([]), (0.0, 0.0))

    def test_paired_ratios_match_repetitions_not_positions(self):
        a = [run("w", "t", 2, 200, 1.0, 1.0), run("w", "t", 1, 100, 1.0, 1.0)]
        b = [run("u", "t", 2, 400, 1.0, 1.0), run("u", "t", 1, 100, 1.0, 1.0),
             run("u", "t", 3, 100, 1.0, 1.0)]
        self.assertEqual(sorted(B.paired_ratios(a, b)), [0.5, 1.0])
        self.assertEqual(B.median_range([0.5, 1.0, 2.0]), "1.00 (0.50–2.00)")
        self.assertEqual(B.median_range([]), "–")

    def test_report_ratio_is_pooled_over_pooled_with_paired_median_and_range(self):
        results = []
        # wssd per CPU-s: 100, 300 (pooled 400/2 = 200); uWS: 100, 100 (pooled 100).
        for rep, (w, u) in enumerate([(100, 100), (300, 100)], start=1):
            results.append(run("wssd 1w", "echo 64 B", rep, w, 1.0, 1.0))
            results.append(run("uWebSockets", "echo 64 B", rep, u, 1.0, 1.0))
        text = B.render(results, (0, 0, 0), (0, 0, 0), 1.0, [], {})
        row = next(line for line in text.splitlines()
                   if line.startswith("| wssd / uWebSockets, echo 64 B,"))
        self.assertEqual(row, "| wssd / uWebSockets, echo 64 B, per server CPU-s | **2.00** | "
                              "2.00 (1.00–3.00) | ≥ 1.0 |")
        self.assertIn("| wssd 1w | echo 64 B | 2 | 200 (100–300) msg/s | 200 (100–300) |", text)
        self.assertNotIn("best", text.lower())


class WriteReport(unittest.TestCase):
    def test_keeps_the_hand_written_tail(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "b.md")
            with open(path, "w") as f:
                f.write("# old generated part\n\n" + B.KEEP_MARKER + "\n\n## By hand\n\nkept\n")
            B.write_report(path, "# new generated part\n")
            with open(path) as f:
                self.assertEqual(f.read(), "# new generated part\n\n" + B.KEEP_MARKER
                                 + "\n\n## By hand\n\nkept\n")

    def test_without_a_marker_writes_the_report_only(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "b.md")
            with open(path, "w") as f:
                f.write("old\n")
            B.write_report(path, "new\n")
            with open(path) as f:
                self.assertEqual(f.read(), "new\n")


if __name__ == "__main__":
    unittest.main()
