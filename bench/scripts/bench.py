#!/usr/bin/env python3
"""The `make bench` runner (called by bench/scripts/bench.sh).

Starts each server under test pinned with taskset, runs `wssd bench --json`
against it (pinned to other cores when there are any), takes the server's
CPU time over the measurement window (`wssd bench --cpu-pid`: on-CPU time
of every thread of the server process and its descendants, from
/proc/PID/task/TID/schedstat, when the window opens and when it closes;
connection setup and teardown fall outside it) and the load generator's
CPU time (rusage), and writes a Markdown report.

The servers: wssd (1 worker, 1 worker with TLS, 2 workers) and the peers
of the PEERS table below (tokio-tungstenite, uWebSockets' examples from
../shared/peers/uws when that directory exists). Each peer names the
suites it takes part in; every server of a suite gets the same runs under
the same pinning, so ratios per server CPU-second within one run compare
like with like.

Interleaving: in the echo, wss and broadcast suites, wssd (1 worker) and
every peer of the suite are started once and kept running together (all
on the servers' core; an idle server uses no CPU, and each run counts the
CPU of the server under test only). Each repetition runs every test on
every server back to back, in the suite's order on odd repetitions and
reversed on even ones (ABBA), so machine drift hits all servers alike.
The report pools the repetitions: per server CPU-s = units of all runs /
server CPU seconds of all runs, a ratio = pooled / pooled, beside the
median and range of the per-repetition ratios (the two servers' runs of
the same repetition). Idle-memory runs get a fresh server each; deflate
and 2-worker runs run once.

Environment knobs (all optional):
  BENCH_SECS      seconds per measured run of the interleaved suites
                  (default 2); single runs take at least 3, idle runs 3
  BENCH_REPEAT    repetitions of the interleaved echo/handshake/wss/broadcast
                  runs (default 8; keep it even so that ABBA balances)
  BENCH_IDLE      idle connections for the memory run (default 10000)
  BENCH_BCAST     broadcast receiver counts (default "1000 10000")
  BENCH_OUT       report file (default docs/benchmarks.md; "-" = stdout only).
                  The file is regenerated, except what follows the line
                  KEEP_MARKER (hand-written sections), which is kept.
  BENCH_PEERS     peers to compare (default: every peer of PEERS whose
                  binary exists; "" = none)
  BENCH_UWS_DIR   uWebSockets peer binaries (default ../shared/peers/uws
                  relative to the repository root)
  BENCH_WSSD      the wssd binary (default target/release/wssd; bench.sh
                  passes the profile-guided build, see scripts/pgo-build.sh)
  BENCH_BUILD     how that binary was built, for the report's header
  BENCH_SUITES    suites to run (default "echo wss broadcast deflate")
"""

import contextlib
import datetime
import functools
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# bench/scripts/bench.py -> the repository root
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WSSD = os.environ.get("BENCH_WSSD", os.path.join(ROOT, "target", "release", "wssd"))
BUILD = os.environ.get("BENCH_BUILD", "given by BENCH_WSSD" if "BENCH_WSSD" in os.environ
                       else "release (`make release`)")
TOKIO = os.path.join(ROOT, "bench", "peers", "tokio-echo", "target", "release", "tokio-echo")
UWS = os.environ.get("BENCH_UWS_DIR", os.path.join(ROOT, "..", "shared", "peers", "uws"))

# Many short interleaved runs rather than a few long ones: a server's CPU
# per message swings by up to half between runs of a few seconds (whether
# the server or the load generator sleeps and who pays for the wake-ups;
# see docs/benchmarks.md), so pooling more repetitions averages more of
# these swings (16 s per test and server, where 4 runs of 3 s gave 12).
SECS = float(os.environ.get("BENCH_SECS", "2"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "8"))
# Runs outside the interleaved suites (deflate, 2 workers) run once each,
# so they keep the longer run.
SINGLE_SECS = max(SECS, 3)
# How long idle-memory runs hold their connections (memory is sampled
# halfway through).
IDLE_HOLD_SECS = 3
IDLE = int(os.environ.get("BENCH_IDLE", "10000"))
BCAST = [int(x) for x in os.environ.get("BENCH_BCAST", "1000 10000").split()]
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "benchmarks.md"))
PEERS_WANTED = os.environ.get("BENCH_PEERS")  # None: all available
SUITES = set(os.environ.get("BENCH_SUITES", "echo wss broadcast deflate").split())
TICK = os.sysconf("SC_CLK_TCK")
# How long `make bench` takes with the defaults here (2 CPUs), for the report.
DEFAULT_MINUTES = "9–10 minutes (546 s measured, load average 1.0 before and 2.2 after)"
NCPU = os.cpu_count() or 1

STARTED = []  # every Popen we start, killed on exit

# In the report file, everything from this line on is written by hand and
# kept when `make bench` regenerates the rest.
KEEP_MARKER = "<!-- Hand-written below: make bench keeps everything from this line on. -->"


def write_report(path, report):
    """Writes `report` to `path`, keeping the hand-written tail (from
    KEEP_MARKER on) of the file already there."""
    tail = ""
    try:
        with open(path) as f:
            old = f.read()
        if KEEP_MARKER in old:
            tail = old[old.index(KEEP_MARKER):]
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(report.rstrip("\n") + "\n\n" + tail if tail else report)


def cleanup(*_):
    for p in STARTED:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
    if _:
        sys.exit(130)


signal.signal(signal.SIGTERM, cleanup)
signal.signal(signal.SIGINT, cleanup)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- pinning ----

def pinning(workers):
    """(server cpus, load cpus, load threads, note) for a run."""
    if NCPU < 2:
        return None, None, 1, "1 CPU: server and load share it (no pinning)"
    if NCPU >= 2 * workers + 1:
        srv = ",".join(str(i) for i in range(workers))
        load = ",".join(str(i) for i in range(workers, NCPU))
        threads = min(NCPU - workers, 2)
        return srv, load, threads, f"server on CPU {srv}, load on CPU {load}"
    if workers == 1:
        return "0", "1", 1, "server on CPU 0, load on CPU 1"
    srv = ",".join(str(i) for i in range(min(workers, NCPU)))
    return srv, srv, min(workers, NCPU), (
        f"server on CPU {srv}, load ({min(workers, NCPU)} threads) shares CPU {srv} "
        "(not enough cores to separate them)")


def pinned(cpus, argv):
    return (["taskset", "-c", cpus] if cpus else []) + argv


# ---- process CPU time ----

def tree(pid):
    out = [pid]
    for i in range(len(out) + 1000):
        if i >= len(out):
            break
        p = out[i]
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    out.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def user_system_ticks(pid):
    """User and system clock ticks of `pid` and its descendants."""
    user = system = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime
            system += int(fields[12])  # stime
        except (OSError, IndexError, ValueError):
            pass
    return user, system


def cpu_ticks(pid):
    return sum(user_system_ticks(pid))


# ---- servers ----

class Peer:
    """A server wssd is compared with: how to start it and which suites
    (sets of runs, see SUITES) it takes part in."""

    def __init__(self, key, label, argv, suites, about, listen=None):
        self.key = key          # name in BENCH_PEERS
        self.label = label      # server column of the report
        self.argv = argv        # {port}, {cert}, {key} are filled in
        self.suites = suites    # keys of SUITES
        self.about = about      # one line for the report's Peers section
        self.listen = listen    # regex for the address it prints, or None: probe {port}

    def binary(self):
        return self.argv[0]

    def available(self):
        return os.access(self.binary(), os.X_OK)


def uws(name):
    return os.path.join(UWS, name)


# Every peer, in report order. Suites: "echo" (echo 64 B / 16 KiB / 64 B
# w32, handshakes, idle memory after a 64 B and a 16 KiB echo), "wss" (the
# same over TLS, against wssd with a [tls] config), "broadcast" (fan-out to
# BCAST receivers), "deflate" (permessage-deflate: 16 KiB JSON echo and
# idle memory after one, `wssd bench --deflate`).
PEERS = [
    Peer("tokio", "tokio-tungstenite", [TOKIO, "127.0.0.1:0"], ["echo"],
         "`bench/peers/tokio-echo` (its own Cargo project, built by `bench/scripts/bench.sh` into "
         "`bench/peers/tokio-echo/target`): tokio *current_thread* runtime, default "
         "`WebSocketConfig`, `ws.send(msg)` for each message received",
         listen=r"listening on (\S+)"),
    Peer("uws", "uWebSockets", [uws("EchoServer"), "{port}"], ["echo"],
         "`EchoServer PORT`: uWebSockets' own `examples/EchoServer.cpp`, compression off"),
    Peer("uws-ssl", "uWebSockets", [uws("EchoServerSSL"), "{port}", "{cert}", "{key}"], ["wss"],
         "`EchoServerSSL PORT CERT KEY`: the same over OpenSSL, with the certificate and key "
         "wssd gets (self-signed ECDSA P-256, made by the script)"),
    Peer("uws-broadcast", "uWebSockets", [uws("BroadcastServer"), "{port}"], ["broadcast"],
         "`BroadcastServer PORT`: uWebSockets' pub/sub, every connection subscribed to the "
         "topic named by its path, every message published to it (sender included)"),
    Peer("uws-deflate-shared", "uWebSockets deflate shared",
         [uws("EchoServerDeflateShared"), "{port}"], ["deflate"],
         "`EchoServerDeflateShared PORT`: shared compressor, no context takeover"),
    Peer("uws-deflate-dedicated", "uWebSockets deflate dedicated",
         [uws("EchoServerDeflateDedicated"), "{port}"], ["deflate"],
         "`EchoServerDeflateDedicated PORT`: dedicated compressor, context takeover (its "
         "README says 15-bit windows; its replies are C zlib's at a 9-bit window and "
         "memLevel 1, see compression.md)"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Server:
    """A started server: wssd (`workers`, optionally TLS) or a peer."""

    def __init__(self, label, argv, tmp, workers=1, listen=None, port=None, tls=None, pin=None):
        """`pin`: (server cpus, load cpus, load threads, note) instead of
        `pinning(workers)`, for scripts that place servers themselves."""
        self.label, self.workers, self.tls = label, workers, tls
        self.cpus, self.load_cpus, self.threads, self.pin_note = pin or pinning(workers)
        name = re.sub(r"\W+", "-", label)
        self.errlog = os.path.join(tmp, f"{name}-{len(STARTED)}.log")
        self.proc = subprocess.Popen(pinned(self.cpus, argv), stderr=open(self.errlog, "w"),
                                     stdout=subprocess.DEVNULL)
        STARTED.append(self.proc)
        deadline = time.time() + 15
        self.addr = None
        while time.time() < deadline and self.addr is None:
            time.sleep(0.1)
            if listen:
                with open(self.errlog) as f:
                    m = re.search(listen, f.read())
                if m:
                    self.addr = m.group(1)
            elif accepts(port):
                self.addr = f"127.0.0.1:{port}"
            if self.proc.poll() is not None:
                break
        if self.addr is None:
            self.stop()
            raise RuntimeError(f"{label} did not start; see {self.errlog}")
        time.sleep(0.3)  # workers up

    def url(self, path):
        return f"{'wss' if self.tls else 'ws'}://{self.addr}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_wssd(workers, tmp, tls=None, compression=False, level=None, label=None,
               binary=None):
    """wssd with `workers` workers; `compression`: routes negotiate
    permessage-deflate, with `[compression] level` if `level` is given;
    `binary` instead of WSSD (ab.py compares two builds)."""
    cfg = os.path.join(tmp, f"wssd-{workers}{'-tls' if tls else ''}"
                            f"{'-deflate' if compression else ''}{level or ''}"
                            f"{'-' + re.sub(r'[^A-Za-z0-9]+', '-', label) if label else ''}.toml")
    with open(cfg, "w") as f:
        f.write(
            '[server]\nlisten = "127.0.0.1:0"\n'
            f"workers = {workers}\nmax_connections_per_worker = 19000\n"
            + ('compression = "deflate"\n' if compression else '') +
            # The peers log nothing per connection; wssd's access log
            # (on by default) costs one write(2) per handshake.
            '[log]\nlevel = "info"\naccess_log = false\n'
            '[[routes]]\npath = "/echo"\nhandler = "echo"\n'
            '[[routes]]\npath = "/chat/{room}"\nhandler = "broadcast"\n'
        )
        if level is not None:
            f.write(f"[compression]\nlevel = {level}\n")
        if tls:
            f.write(f'[tls]\ncert = "{tls[0]}"\nkey = "{tls[1]}"\n')
    return Server(label or f"wssd {workers}w", [binary or WSSD, "--config", cfg], tmp,
                  workers=workers,
                  listen=r"listening on (\S+?)(?:\s|$)", tls=tls)


def start_peer(peer, tmp, tls=None):
    port = free_port()
    cert, key = tls or ("", "")
    argv = [a.format(port=port, cert=cert, key=key) for a in peer.argv]
    return Server(peer.label, argv, tmp, listen=peer.listen, port=None if peer.listen else port,
                  tls=tls)


def make_cert(tmp):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1; wssd and uWS get the
    same one (P-256: what current servers deploy, and 10,000 TLS connections
    set up in seconds rather than the minute RSA-2048 signatures take here)."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "cert.key")
    try:
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    return (cert, key) if r.returncode == 0 else None


def run_bench(server, test, path, args, secs, also=(), idle=()):
    """Runs one `wssd bench --json`; returns a result dict. `also`: more
    servers (broadcast over several instances): their URLs follow the first
    and their CPU time (and that of any `extra_pids`) is added. `idle`:
    servers left running beside it (interleaved suites); their CPU time is
    not counted, only recorded (`idle_cpu_s`) to show that they stay idle."""
    argv = [WSSD, "bench", server.url(path)] + [s.url(path) for s in also] + [
        "--json", "-t", str(server.threads), "-d", str(secs)] + args
    if server.tls:
        argv += ["--ca-file", server.tls[0]]
    pids = [server.proc.pid] + [s.proc.pid for s in also] + list(getattr(server, "extra_pids", []))
    for pid in pids:
        argv += ["--cpu-pid", str(pid)]
    argv = pinned(server.load_cpus, argv)
    idle_pids = [s.proc.pid for s in idle]
    idle_before = {p: cpu_ticks(p) for p in idle_pids}
    before, t0 = {p: cpu_ticks(p) for p in pids}, time.time()
    errf = tempfile.TemporaryFile()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf)
    STARTED.append(p)
    killer = threading.Timer(secs + 120, p.kill)
    killer.start()
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    killer.cancel()
    ru = p.returncode
    after, t1 = {p: cpu_ticks(p) for p in pids}, time.time()
    idle_cpu = sum(cpu_ticks(p) - idle_before[p] for p in idle_pids) / TICK
    errf.seek(0)
    err = errf.read()
    client_cpu = usage.ru_utime + usage.ru_stime
    try:
        data = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        data = {}
    # Per process tree (pid -> CPU seconds), for reports that state them
    # apart: over the measurement window as `wssd bench --cpu-pid` took it
    # (the window's messages over the window's CPU time), or, where it
    # could not, over the whole run (connection setup and teardown too).
    run_cpu = {p: (after[p] - before[p]) / TICK for p in pids}
    window_cpu = data.get("server_cpu_s") or {}
    if all(str(p) in window_cpu for p in pids):
        cpu_by_pid, cpu_span = {p: window_cpu[str(p)] for p in pids}, "window"
    else:
        cpu_by_pid, cpu_span = run_cpu, "run"
    res = {
        "server": server.label, "workers": server.workers,
        "test": test, "rc": ru, "server_cpu_s": sum(cpu_by_pid.values()), "wall_s": t1 - t0,
        "server_cpu_by_pid": cpu_by_pid, "server_cpu_span": cpu_span,
        "server_cpu_run_s": sum(run_cpu.values()),
        "client_cpu_s": client_cpu, "idle_cpu_s": idle_cpu,
        "idle_servers": len(idle_pids), "pin": server.pin_note, "json": data,
        "stderr": err.decode(errors="replace").strip().splitlines()[-3:],
    }
    j = data
    log(f"  {server.label:22} {test:24} rc={ru} msg/s={j.get('messages_per_s', 0):.0f} "
        f"hs/s={j.get('handshakes_per_s', 0):.0f} server_cpu={res['server_cpu_s']:.2f}s "
        f"client_cpu={client_cpu:.2f}s wall={t1 - t0:.1f}s errors={j.get('errors', '?')}"
        + (f" idle_servers_cpu={idle_cpu:.2f}s" if idle else ""))
    for line in res["stderr"] if ru != 0 else []:
        log(f"    {line}")
    return res


def echo_tests(prefix=""):
    """(test, path, args) of the echo suite: echo 64 B / 16 KiB (text),
    64 B w32 (not over TLS), handshakes."""
    sizes = [("echo 64 B", ["-s", "64"]), ("echo 16 KiB", ["-s", "16384"])]
    if not prefix:
        sizes.append(("echo 64 B w32", ["-s", "64", "-w", "32"]))
    return ([(prefix + test, "/echo", ["-c", "100", "--text"] + args) for test, args in sizes]
            + [(prefix + "handshakes", "/echo", ["-c", "100", "-m", "handshake"])])


def broadcast_tests():
    """(test, path, args) of the broadcast suite: fan-out to BCAST receivers."""
    return [(f"broadcast {n}", "/chat/bench", ["-c", str(n), "-m", "broadcast", "-w", "4"])
            for n in BCAST]


def rep_order(servers, rep):
    """ABBA: the suite's order on odd repetitions, reversed on even ones."""
    return list(servers) if rep % 2 else list(reversed(servers))


def interleaved(servers, tests, results, name):
    """Each repetition runs every test on every server (all running at
    once) back to back, in `rep_order`; the other servers of the suite are
    idle meanwhile, and their CPU time is recorded apart, not counted."""
    for rep in range(1, REPEAT + 1):
        order = rep_order(servers, rep)
        log(f"[{rep}/{REPEAT}] {name}: {', '.join(s.label for s in order)}")
        for test, path, args in tests:
            for srv in order:
                others = [o for o in servers if o is not srv]
                results.append(dict(run_bench(srv, test, path, args, SECS, idle=others), rep=rep))


def idle_run(server, results, size, prefix=""):
    """Memory per idle connection after one echo of `size` (on a fresh
    server: the RSS delta is taken from before the first connection)."""
    what = "64 B" if size == 64 else "16 KiB"
    results.append(dict(run_bench(
        server, f"{prefix}idle {IDLE}, {what} echo", "/echo",
        ["-c", str(IDLE), "-s", str(size), "--text", "-m", "idle", "--connect-timeout", "60",
         "--pid", str(server.proc.pid)], IDLE_HOLD_SECS), rep=1))


JSON_ARGS = ["--payload", "json", "--text", "-s", "16384"]
DEFLATE_ARGS = ["--deflate"] + JSON_ARGS
DEFLATE_ECHO = "deflate echo 16 KiB JSON"
PLAIN_JSON_ECHO = "deflate off: echo 16 KiB JSON"
# wssd's configurations in the deflate suite: (label, compression, level).
# Level 1 is wssd's default; 6 is zlib's default, which uWebSockets uses.
WSSD_DEFLATE = [
    ("wssd 1w deflate", True, None),
    ("wssd 1w deflate level 6", True, 6),
    ("wssd 1w", False, None),
]


def deflate_declined(server):
    """None if `server` accepts a browser-like permessage-deflate offer, else why not."""
    p = subprocess.run([WSSD, "bench", server.url("/echo"), "--deflate", "-c", "1", "-d", "0.2",
                        "--json"], capture_output=True, text=True, timeout=60)
    if p.returncode == 0:
        return None
    lines = p.stderr.strip().splitlines()
    return lines[-1] if lines else f"wssd bench exited {p.returncode}"


def deflate_suite(srv, results, skipped, idle=True):
    """16 KiB JSON text echo with permessage-deflate, and (`idle`) idle memory
    after one."""
    why = deflate_declined(srv)
    if why is not None:
        key = "wssd-deflate" if srv.label.startswith("wssd") else srv.label
        skipped[key] = f"skipped: {why}"
        log(f"  {srv.label}: deflate runs skipped: {why}")
        return
    results.append(dict(run_bench(srv, DEFLATE_ECHO, "/echo",
                                  ["-c", "100"] + DEFLATE_ARGS, SINGLE_SECS), rep=1))
    if idle:
        results.append(dict(run_bench(
            srv, f"deflate idle {IDLE}, 16 KiB JSON echo", "/echo",
            ["-c", str(IDLE), "-m", "idle", "--connect-timeout", "60",
             "--pid", str(srv.proc.pid)] + DEFLATE_ARGS, IDLE_HOLD_SECS), rep=1))


def plain_json_suite(srv, results):
    """The same 16 KiB JSON echo without compression: what compressing costs."""
    results.append(dict(run_bench(srv, PLAIN_JSON_ECHO, "/echo",
                                  ["-c", "100"] + JSON_ARGS, SINGLE_SECS), rep=1))


def with_server(start, body):
    """Starts a server, runs `body(server)`, stops it even on failure."""
    srv = start()
    try:
        body(srv)
    finally:
        srv.stop()


@contextlib.contextmanager
def running(starters, skipped):
    """Starts every (key, start) of `starters` and yields the servers that
    started; stops them all on the way out, even on failure. A peer that
    does not start is left out and noted in `skipped[key]`; wssd (key
    "wssd") not starting is an error."""
    servers = []
    try:
        for key, start in starters:
            try:
                servers.append(start())
            except RuntimeError as e:
                if key == "wssd":
                    raise
                skipped[key] = f"did not start: {e}"
                log(f"  {key}: {e}; left out")
        yield servers
    finally:
        for srv in servers:
            srv.stop()


def suite(name, starters, tests, idle_sizes, results, skipped, prefix=""):
    """One interleaved suite: the servers of `starters` run `tests`
    REPEAT times interleaved, then each gets a fresh server per idle-memory
    run of `idle_sizes`."""
    with running(starters, skipped) as servers:
        interleaved(servers, tests, results, name)
    for key, start in starters:
        for size in idle_sizes if key not in skipped else ():
            with running([(key, start)], skipped) as servers:
                for srv in servers:
                    idle_run(srv, results, size, prefix)


def two_workers(srv, results):
    """wssd 2 workers, once: the echo tests and broadcast."""
    for test, path, args in echo_tests() + broadcast_tests():
        results.append(dict(run_bench(srv, test, path, args, SINGLE_SECS), rep=1))


def selected_peers():
    """(peers to run, notes on peers left out)."""
    wanted = None if PEERS_WANTED is None else set(PEERS_WANTED.split())
    run, skipped = [], {}
    for p in PEERS:
        if wanted is not None and p.key not in wanted:
            skipped[p.key] = "not selected (BENCH_PEERS)"
        elif not p.available():
            skipped[p.key] = f"not run: {os.path.relpath(p.binary(), ROOT)} is missing"
        else:
            run.append(p)
    return run, skipped


def main():
    tmp = tempfile.mkdtemp(prefix="wssd-bench.")
    results = []
    load_before = os.getloadavg()
    start = time.time()
    peers, skipped = selected_peers()
    in_suite = lambda suite: [p for p in peers if suite in p.suites]
    tls = make_cert(tmp)
    if tls is None:
        skipped["wss"] = "not run: openssl could not make a certificate"
    wssd1 = ("wssd", functools.partial(start_wssd, 1, tmp))
    peer_starters = lambda name, tls=None: [
        (p.key, functools.partial(start_peer, p, tmp, tls)) for p in in_suite(name)]
    try:
        if "echo" in SUITES:
            suite("echo", [wssd1] + peer_starters("echo"), echo_tests(), (64, 16384),
                  results, skipped)
        if tls and "wss" in SUITES:
            wssd_tls = ("wssd", functools.partial(start_wssd, 1, tmp, tls))
            suite("wss", [wssd_tls] + peer_starters("wss", tls), echo_tests("wss "),
                  (64, 16384), results, skipped, prefix="wss ")
        if "broadcast" in SUITES:
            suite("broadcast", [wssd1] + peer_starters("broadcast"), broadcast_tests(), (),
                  results, skipped)
        if "deflate" in SUITES:
            log("deflate")
            for label, compression, level in WSSD_DEFLATE:
                start_server = functools.partial(start_wssd, 1, tmp, compression=compression,
                                                 level=level, label=label)
                if compression:
                    with_server(start_server, lambda srv: deflate_suite(
                        srv, results, skipped, idle=level is None))
                else:
                    with_server(start_server, lambda srv: plain_json_suite(srv, results))
            for p in in_suite("deflate"):
                with_server(functools.partial(start_peer, p, tmp),
                            lambda srv: deflate_suite(srv, results, skipped))
        if SUITES >= {"echo", "broadcast"}:
            log("wssd, 2 workers")
            with_server(functools.partial(start_wssd, 2, tmp),
                        lambda srv: two_workers(srv, results))
    finally:
        cleanup()
    load_after = os.getloadavg()
    with open(os.path.join(tmp, "results.json"), "w") as f:
        json.dump(results, f)
    report = render(results, load_before, load_after, time.time() - start, peers, skipped)
    print(report)
    if OUT != "-":
        write_report(OUT, report)
        log(f"written to {os.path.relpath(OUT, ROOT)} (raw results: {tmp}/results.json)")
    bad = [r for r in results if r["rc"] != 0]
    return 1 if bad else 0


# ---- report ----

def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024 // 1024
    except OSError:
        mem = 0
    virt = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Hypervisor vendor:\s*(\S+)", out)
        if m:
            virt = f", {m.group(1)} guest"
    except OSError:
        pass
    return f"{model}, {NCPU} CPUs{virt}, {mem} GiB RAM, Linux {platform.release()}"


def commit():
    def git(*a):
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()
    h = git("rev-parse", "--short=12", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock")
    return h + (" (+ uncommitted changes)" if dirty else "")


def metric(r):
    """(throughput, unit) of a result."""
    j = r["json"]
    if "handshakes" in r["test"]:
        return j.get("handshakes_per_s", 0.0), "handshakes/s"
    if r["test"].startswith("broadcast"):
        b = j.get("broadcast") or {}
        return b.get("deliveries_per_s", 0.0), "deliveries/s"
    return j.get("messages_per_s", 0.0), "msg/s"


def units(r):
    j = r["json"]
    if "handshakes" in r["test"]:
        return j.get("handshakes", 0)
    return j.get("messages", 0)


def per_cpu(r):
    return units(r) / r["server_cpu_s"] if r["server_cpu_s"] > 0 else 0.0


def rss_per_conn(r):
    """Server RSS per held connection (bytes) of an idle run, 0 if unknown."""
    return ((r["json"].get("memory") or {}).get("rss_per_connection_bytes") or 0.0)


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}"


def elapsed(r):
    """The run's measured seconds (the window `wssd bench` divides by)."""
    return r["json"].get("elapsed_s") or r["wall_s"]


def pooled(rs):
    """(throughput, per server CPU-s) of the runs `rs` taken together:
    total units / total measured seconds, total units / total server CPU
    seconds. 0.0 where the denominator is 0."""
    n = sum(units(r) for r in rs)
    t = sum(elapsed(r) for r in rs)
    cpu = sum(r["server_cpu_s"] for r in rs)
    return (n / t if t > 0 else 0.0), (n / cpu if cpu > 0 else 0.0)


def with_range(value, xs, f=fmt):
    """`value` followed by the range of `xs` in parentheses (when they differ)."""
    xs = sorted(xs)
    if len(xs) < 2 or f(xs[0]) == f(xs[-1]):
        return f(value)
    return f"{f(value)} ({f(xs[0])}–{f(xs[-1])})"


def paired_ratios(a_runs, b_runs):
    """Per repetition, per server CPU-s of a's run / b's run of the same
    repetition (repetitions where both ran and b did some work)."""
    b_by_rep = {r.get("rep"): per_cpu(r) for r in b_runs}
    out = []
    for r in a_runs:
        b = b_by_rep.get(r.get("rep"), 0.0)
        if b > 0:
            out.append(per_cpu(r) / b)
    return out


def median_range(xs):
    """"median (min–max)" of `xs`, "–" if empty."""
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.2f} (one repetition)"
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def median_of(rs, f):
    """Median of f(r) over the runs `rs` (0.0 if none)."""
    xs = [f(r) for r in rs]
    return statistics.median(xs) if xs else 0.0


def mean_of(rs, f):
    return sum(f(r) for r in rs) / len(rs) if rs else 0.0


def group_results(results):
    """{(server, test): runs}, ordered by test (first run of each test),
    then server (first run of each server)."""
    tests, servers = {}, {}
    for r in results:
        tests.setdefault(r["test"], len(tests))
        servers.setdefault(r["server"], len(servers))
    keys = sorted({(r["server"], r["test"]) for r in results},
                  key=lambda k: (tests[k[1]], servers[k[0]]))
    return {k: [r for r in results if (r["server"], r["test"]) == k] for k in keys}


METHOD_DEFLATE = "### Method: compression (permessage-deflate)\n\n`wssd bench --deflate --payload json --text -s 16384 -c 100`: every connection offers `permessage-deflate; client_max_window_bits` as browsers do, checks the answer (RFC 7692 section 7.1), compresses its 16 KiB JSON-like messages (chat records from a seeded generator, different throughout every message; about 21 % of their size with a 15-bit window) with `flate2`/zlib-rs at level 6, honouring the answer's context takeover and window, and checks every byte of each inflated echo. Reported: messages per server CPU-second, bytes on the wire per message in each direction (socket bytes, framing included) against the 16,384 message bytes, the accepted answer, and (idle mode, `--pid`) server memory per idle connection after one such echo at 10,000 connections. A server whose answer lacks the extension is not measured uncompressed: `wssd bench` stops with *server declined permessage-deflate* and the row says so."

METHOD_CLUSTER = "### Method: broadcast across instances (issue 13)\n\n`bench/scripts/bench-cluster.py` (not part of `make bench`) starts `redis-server` on a free loopback port (no persistence, not a system service), two wssd instances A and B (1 worker each) with `[cluster] redis_url` pointing at it, and two instances without `[cluster]` (1 worker, and 2 workers as a control); for each N of `BENCH_BCAST` (1,000 for the goal) and each repetition it runs `wssd bench -m broadcast -w 4 -c N` against the lone instances and against `ws://A/chat/bench ws://B/chat/bench` (receivers round-robin over A and B, the sender on A, every delivery counted per URL against the expected number), in that order in odd repetitions and in the reverse order in even ones (ABBA, so that a drift of the machine's load weighs on every setup alike). `BENCH_PLACEMENT=spread` (the default) gives each instance a core of its own, as on separate machines (2 CPUs: A and Redis on CPU 0, B and the load on CPU 1; from 4 CPUs A, B, Redis and the load each apart); `shared` puts every server process on CPU 0 and the load on CPU 1. Server CPU is taken per process tree, the instances and Redis apart; the goal (the second instance costs no more than 20 % of one-instance throughput per server CPU-second) is the ratio of deliveries per instance CPU-second, two instances / one: pooled over the repetitions (each setup's deliveries of all repetitions over its instance CPU seconds of all repetitions, then two / one), with the median and range of the per-repetition ratios beside it. Each cluster helper's CPU time (schedstat) and context switches per broadcast message are reported too. Its figures are in the hand-written section *Broadcast across two instances* at the end of this file, which `make bench` keeps."


def render(results, lb, la, took, peers, skipped):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = []
    L.append("# Benchmarks\n")
    L.append("Generated by `make bench` (`bench/scripts/bench.sh` → `bench/scripts/bench.py`); "
             "rerun it to refresh this file.\n")
    L.append(f"* **Machine:** {machine()}")
    L.append(f"* **Date:** {now}; the run took {took:.0f} s")
    L.append(f"* **Commit:** {commit()}")
    L.append(f"* **wssd build:** {BUILD}; `{os.path.relpath(WSSD, ROOT)}`, which is also the load generator")
    L.append(f"* **Load average** before/after: {lb[0]:.2f} / {la[0]:.2f} "
             "(other work on the machine makes numbers noisy; compare ratios within one run)")
    pins = sorted({(r['server'], r['pin']) for r in results})
    L.append("* **Pinning (taskset):** " + "; ".join(f"{s}: {p}" for s, p in pins))
    L.append(f"* **Runs:** {SECS:g} s each in the interleaved suites, {SINGLE_SECS:g} s the single runs; load generator `wssd bench` (1 thread unless noted); "
             "wssd with `[log] access_log = false` (the peers log nothing per connection; the "
             "access log costs wssd one `write(2)` per handshake). **Interleaved:** the echo, wss "
             "and broadcast suites start wssd (1 worker) and every peer of the suite once and keep "
             f"them all running; each of {REPEAT} repetitions runs every test on every server back "
             "to back, in the suite's order on odd repetitions and reversed on even ones (ABBA), "
             "so that drift of the machine hits all servers alike. Idle-memory runs get a fresh "
             "server each; the deflate and 2-worker runs run once.")
    shared_runs = [r for r in results if r.get("idle_servers")]
    if shared_runs:
        worst = max(shared_runs, key=lambda r: r["idle_cpu_s"])
        L.append(f"* **Idle servers:** while one server of a suite was measured, the others "
                 f"(on the same core, not under load) used at most {worst['idle_cpu_s']:.2f} CPU-s "
                 f"together in one run, {sum(r['idle_cpu_s'] for r in shared_runs):.2f} CPU-s in "
                 f"all {len(shared_runs)} interleaved runs (against "
                 f"{sum(r['server_cpu_s'] for r in shared_runs):.0f} CPU-s of the servers "
                 "measured); a run counts the CPU time of the server under test only.")
    L.append("")
    L.append("## Results\n")
    whole_run = sum(1 for r in results if r.get("server_cpu_span") == "run")
    L.append("*Per server CPU-s* divides the units (messages, handshakes) completed in the "
             "measurement window by the server's CPU time over the same window (on-CPU time of "
             "every thread of all its processes, from `/proc/PID/task/TID/schedstat`, sampled by "
             "`wssd bench --cpu-pid` as the window opens and closes, so connection setup and "
             "teardown are not counted"
             + (f"; in {whole_run} runs it could not be sampled and the whole run's user + system "
                "time from `/proc/PID/stat` is used" if whole_run else "")
             + "). Both columns are **pooled** over "
             "the repetitions: per server CPU-s = units of all runs / server CPU seconds of all "
             "runs; throughput = units of all runs / measured seconds of all runs (each run's "
             "window as `wssd bench` reports it). In parentheses the range of the per-run figures. "
             "Latency: median over the runs of each run's p50 and p99; CPU seconds: mean per run.\n")
    L.append("| server | test | runs | throughput | per server CPU-s | latency p50 / p99 (ms) | CPU s per run: server / load | errors |")
    L.append("|---|---|---|---|---|---|---|---|")
    groups = group_results(results)
    for (srv, test), rs in groups.items():
        if "idle" in test or test.startswith(("broadcast", "deflate")):
            continue
        _, unit = metric(rs[0])
        thr, eff = pooled(rs)
        lat = lambda q: lambda r: (r["json"].get("latency_us") or {}).get(q, 0)
        errs = sum(r["json"].get("errors", 0) for r in rs) + sum(1 for r in rs if r["rc"] != 0 and not r["json"])
        L.append(f"| {srv} | {test} | {len(rs)} | {with_range(thr, [metric(r)[0] for r in rs])} {unit} | "
                 f"{with_range(eff, [per_cpu(r) for r in rs])} | "
                 f"{median_of(rs, lat('p50')) / 1000:.2f} / {median_of(rs, lat('p99')) / 1000:.2f} | "
                 f"{mean_of(rs, lambda r: r['server_cpu_s']):.2f} / "
                 f"{mean_of(rs, lambda r: r['client_cpu_s']):.2f} of "
                 f"{mean_of(rs, lambda r: r['wall_s']):.1f} s wall | {errs} |")
    L.append("")

    # ratios
    def pooled_eff(srv, test):
        return pooled(groups.get((srv, test), []))[1]

    def pooled_thr(srv, test):
        return pooled(groups.get((srv, test), []))[0]

    L.append("## Ratios against the goals\n")
    L.append("wssd 1 worker against each peer, per server CPU-second. *Pooled*: wssd's pooled "
             "figure / the peer's (each = units of all repetitions / server CPU seconds of all "
             "repetitions, see *Results*). *Per repetition*: the ratio of wssd's run to the peer's "
             "run of the same repetition (run back to back), median and range over the "
             f"{REPEAT} repetitions. Memory and 2-worker rows come from single runs.\n")
    L.append("| ratio | pooled | per repetition: median (range) | goal |")
    L.append("|---|---|---|---|")

    def ratio(peer, test, goal):
        a, b = pooled_eff("wssd 1w", test), pooled_eff(peer, test)
        if a > 0 and b > 0:
            pairs = paired_ratios(groups.get(("wssd 1w", test), []), groups.get((peer, test), []))
            L.append(f"| wssd / {peer}, {test}, per server CPU-s | **{a / b:.2f}** | "
                     f"{median_range(pairs)} | {goal} |")

    # (peer, test, goal): issue 10's goals; "(no goal)" rows are for orientation.
    for peer, test, goal in [
        ("uWebSockets", "echo 64 B", "≥ 1.0"),
        ("uWebSockets", "echo 16 KiB", "≥ 1.0"),
        ("uWebSockets", "echo 64 B w32", "(no goal)"),
        ("uWebSockets", "handshakes", "≥ 1.0"),
        *[("uWebSockets", f"broadcast {n}", "≥ 1.0") for n in BCAST],
        ("uWebSockets", "wss echo 64 B", "≥ 1.0"),
        ("uWebSockets", "wss echo 16 KiB", "≥ 1.0"),
        ("uWebSockets", "wss handshakes", "≥ 1.0"),
        ("tokio-tungstenite", "echo 64 B", "≥ 1.5"),
        ("tokio-tungstenite", "echo 16 KiB", "≥ 1.5"),
        ("tokio-tungstenite", "echo 64 B w32", "(no goal)"),
        ("tokio-tungstenite", "handshakes", "≥ 1.0"),
    ]:
        ratio(peer, test, goal)
    # Memory per idle connection: RSS per connection, wssd / uWebSockets.
    for test, label, goal in [
        (f"idle {IDLE}, 64 B echo", "after a 64 B echo", "(absolute goal ≤ 1 KiB: see below)"),
        (f"idle {IDLE}, 16 KiB echo", "after a 16 KiB echo", "(absolute goal ≤ 1 KiB: see below)"),
        (f"wss idle {IDLE}, 64 B echo", "wss, after a 64 B echo", "≤ 1.0"),
        (f"wss idle {IDLE}, 16 KiB echo", "wss, after a 16 KiB echo", "≤ 1.0"),
    ]:
        a = [rss_per_conn(r) for r in groups.get(("wssd 1w", test), [])]
        b = [rss_per_conn(r) for r in groups.get(("uWebSockets", test), [])]
        if a and b and b[0] > 0:
            L.append(f"| wssd / uWebSockets, memory per idle connection {label} | "
                     f"{a[0] / b[0]:.2f} | – | {goal} |")
    shared = NCPU < 5
    for test in ["echo 64 B", "echo 16 KiB", "echo 64 B w32", "handshakes"]:
        a, b = pooled_thr("wssd 2w", test), pooled_thr("wssd 1w", test)
        if a > 0 and b > 0:
            goal = ("≥ 1.8 when the load is not the bottleneck — **it is here**: "
                    "the load shares the 2 cores" if shared else
                    "≥ 1.8 when the load is not the bottleneck")
            L.append(f"| wssd 2 workers (one run) / 1 worker (pooled), {test} throughput | "
                     f"{a / b:.2f} | – | {goal} |")
    for test in ["echo 64 B", "echo 16 KiB"]:
        a, b = pooled_eff("wssd 2w", test), pooled_eff("wssd 1w", test)
        if a > 0 and b > 0:
            L.append(f"| wssd 2 workers (one run) / 1 worker (pooled), {test} per server CPU-s | "
                     f"{a / b:.2f} | – | (indicator: ≈ 1.0 means the second worker costs no extra "
                     "CPU per message) |")
    L.append("")

    L.append("## Memory per idle connection\n")
    L.append("Idle mode: each connection upgrades, does one echo, then is held (echo and wss "
             "rows: on a freshly started server each; deflate rows: on the server of the deflate "
             "echo run, after it); "
             "`--pid` sums RSS/PSS of the server's master and all its descendants "
             "(`/proc/PID/smaps_rollup`) before the first connection and while all are held, "
             "and divides the difference by the connections. It includes what the server "
             "allocates once for its first connections (buffers, table capacity; with "
             "compression its shared compressor), and no kernel socket buffers.\n")
    L.append("| server | test | connections held | RSS per connection | PSS per connection | errors |")
    L.append("|---|---|---|---|---|---|")
    for (srv, test), rs in groups.items():
        if "idle" not in test:
            continue
        j = rs[0]["json"]
        m = j.get("memory") or {}
        what = ("wss, " if test.startswith("wss") else "") + (
            "deflate, after a 16 KiB JSON echo" if test.startswith("deflate") else
            "after a 16 KiB echo" if "16 KiB" in test else "after a 64 B echo")
        L.append(f"| {srv} | {what} | {j.get('connected', 0):,} of {j.get('connections', 0):,} | "
                 f"{m.get('rss_per_connection_bytes', 0) / 1024:.2f} KiB | "
                 f"{m.get('pss_per_connection_bytes', 0) / 1024:.2f} KiB | {j.get('errors', '?')} |")
    L.append("\nGoals: ≤ 1 KiB of server memory per idle connection at 10,000 connections "
             "after a 64 B and after a 16 KiB echo alike; over `wss://`, at most uWebSockets' "
             "memory per idle connection. The *16 KiB echo* rows show what a connection keeps "
             "after one large message. Kernel socket buffers are not in these figures. "
             "100,000 idle connections: `bench/scripts/bench-100k.sh`, see docs/operations.md, "
             "\"Many connections\".\n")

    L.append("## Broadcast fan-out\n")
    L.append("`wssd bench -m broadcast -w 4`: all connections in room `/chat/bench` (wssd: "
             "route `handler = \"broadcast\"`; uWebSockets: `BroadcastServer`, topic = path; "
             "sender included in both), connection 0 sends 64 B messages with at most 4 in "
             "flight. Delay = from send to the *last* receiver. The 1-worker servers run "
             "interleaved like the echo suite; deliveries/s and per server CPU-s are pooled "
             "over the runs (range in parentheses), the delays are medians over the runs, "
             "messages sent the total, CPU seconds the mean per run.\n")
    L.append("| server | receivers | runs | deliveries/s | per server CPU-s | messages sent | last-receiver delay p50 / p99 (ms) | CPU s per run: server / load | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for (srv, test), rs in groups.items():
        if not test.startswith("broadcast"):
            continue
        bc = lambda r: r["json"].get("broadcast") or {}
        delay = lambda q: lambda r: (bc(r).get("last_receiver_delay_us") or {}).get(q, 0)
        thr, eff = pooled(rs)
        L.append(f"| {srv} | {bc(rs[0]).get('receivers', 0):,} | {len(rs)} | "
                 f"{with_range(thr, [metric(r)[0] for r in rs])} | "
                 f"{with_range(eff, [per_cpu(r) for r in rs])} | "
                 f"{sum(bc(r).get('messages_sent', 0) for r in rs):,} | "
                 f"{median_of(rs, delay('p50')) / 1000:.2f} / {median_of(rs, delay('p99')) / 1000:.2f} | "
                 f"{mean_of(rs, lambda r: r['server_cpu_s']):.2f} / "
                 f"{mean_of(rs, lambda r: r['client_cpu_s']):.2f} of "
                 f"{mean_of(rs, lambda r: r['wall_s']):.1f} s wall | "
                 f"{sum(r['json'].get('errors', 0) for r in rs)} |")
    L.append("")

    L.append("Per server CPU-s here counts the measurement window only: setting up the "
             "connections (one handshake each) comes before it and is not counted.\n")

    L.append("## Compression (permessage-deflate)\n")
    L.append("`wssd bench --deflate --payload json --text -s 16384 -c 100`: every connection "
             "offers `permessage-deflate; client_max_window_bits` (as browsers do), sends "
             "16 KiB JSON-like text compressed and checks every byte of the inflated echo. "
             "*On the wire* is socket bytes per message (framing included) against the "
             "16,384 message bytes. wssd runs with its defaults (`level = 1`), with "
             "`[compression] level = 6` (zlib's default, which uWebSockets uses), and with "
             "compression off (the same echo without `--deflate`: what compressing costs).\n")
    L.append("| server | answer | msg/s | per server CPU-s | on the wire per message: sent / received | latency p50 / p99 (ms) | CPU s: server / load | errors |")
    L.append("|---|---|---|---|---|---|---|---|")
    for (srv, test), rs in groups.items():
        if test not in (DEFLATE_ECHO, PLAIN_JSON_ECHO):
            continue
        r = rs[0]
        j = r["json"]
        w = j.get("wire") or {}
        n = max(j.get("messages", 0), 1)
        lat = j.get("latency_us") or {}
        answer = ("(not offered)" if test == PLAIN_JSON_ECHO else
                  ((j.get("deflate") or {}).get("answer") or "?")
                  .replace("permessage-deflate", "").strip("; "))
        L.append(f"| {srv} | {answer or '(defaults)'} | {j.get('messages_per_s', 0):,.0f} | {fmt(per_cpu(r))} | "
                 f"{w.get('sent_bytes', 0) / n:,.0f} / {w.get('received_bytes', 0) / n:,.0f} B | "
                 f"{lat.get('p50', 0) / 1000:.2f} / {lat.get('p99', 0) / 1000:.2f} | "
                 f"{r['server_cpu_s']:.2f} / {r['client_cpu_s']:.2f} of {r['wall_s']:.1f} s wall | "
                 f"{j.get('errors', '?')} |")
    if "wssd-deflate" in skipped:
        L.append(f"| wssd 1w | – | – | – | – | – | – | {skipped['wssd-deflate']} |")
    L.append("")
    for (a_srv, a_test), (b_srv, b_test), note in [
        (("wssd 1w deflate", DEFLATE_ECHO), ("uWebSockets deflate shared", DEFLATE_ECHO),
         "**goal ≥ 1.0**"),
        (("wssd 1w deflate level 6", DEFLATE_ECHO), ("uWebSockets deflate shared", DEFLATE_ECHO),
         "same level as uWebSockets"),
        (("wssd 1w deflate", DEFLATE_ECHO), ("uWebSockets deflate dedicated", DEFLATE_ECHO),
         "no goal"),
        (("wssd 1w deflate", DEFLATE_ECHO), ("wssd 1w", PLAIN_JSON_ECHO),
         "the cost of compressing: 1 / ratio = CPU per compressed echo over CPU per plain one"),
        (("wssd 1w deflate level 6", DEFLATE_ECHO), ("wssd 1w", PLAIN_JSON_ECHO), "the same at level 6"),
    ]:
        a, b = pooled_eff(a_srv, a_test), pooled_eff(b_srv, b_test)
        if a > 0 and b > 0:
            L.append(f"* {a_srv} / {b_srv}{' (no compression)' if b_test == PLAIN_JSON_ECHO else ''}, "
                     f"16 KiB JSON echoes per server CPU-s: **{a / b:.2f}** ({note})")
    L.append("\nGoals (issue 12): per server CPU-second at least as many 16 KiB JSON echoes as "
             "uWebSockets' shared compressor; memory per idle compressed connection after one "
             "16 KiB JSON echo ≤ 1 KiB with the defaults (see *Memory per idle connection*; "
             "uWebSockets measured 0.33 KiB shared, 35.7 KiB dedicated).\n")
    L.append("## Reading these numbers\n")
    L.append("* Compare the *per server CPU-s* column and the ratios, not wall-clock throughput: "
             "on a shared machine a pinned process only gets the share of its core that other "
             "work leaves it (see the CPU-seconds column: neither side of a 1-worker run is near "
             "100 % of its core), and window-1 echo is bound by wake-up latency.")
    if NCPU < 5:
        L.append(f"* With {NCPU} CPUs, 2 workers and the load generator share the same cores, so "
                 "*2 workers / 1 worker* measures contention, not scaling: the load generator "
                 "(and the other tenants) are the bottleneck. The ≥ 1.8× goal needs at least 5 "
                 "CPUs (2 for the workers, the rest for `wssd bench -t 2`); the script then pins "
                 "them apart by itself.")
    L.append("* Server CPU is taken over the measurement window (`wssd bench --cpu-pid`, "
             "see *Results*), without connection setup and teardown; load CPU is the bench "
             "process's user + system time over its whole run (`wait4` rusage).")
    L.append("")
    L.append("## Peers\n")
    L.append("Every server under the same pinning (1-worker servers on one core, the load "
             "generator on the other; in the interleaved suites the servers share that core, "
             "only one of them under load at a time); echo runs use text frames, 100 connections. "
             "`bench/scripts/bench.py` holds the peer table; a peer runs when its binary exists "
             "(uWebSockets: `../shared/peers/uws/` relative to the repository root, see its README.md, "
             "or `BENCH_UWS_DIR`).\n")
    L.append("| peer | suites | server | this run |")
    L.append("|---|---|---|---|")
    ran = {p.key for p in peers}
    for p in PEERS:
        state = skipped.get(p.key) or ("ran" if p.key in ran else "not run")
        L.append(f"| {p.key} | {', '.join(p.suites)} | {p.label}: {p.about} | {state} |")
    L.append(f"| (wssd) | echo, wss, broadcast, deflate | wssd 1 worker (wss: with a `[tls]` config, "
             f"same certificate as uWebSockets; deflate: `compression = \"deflate\"` at level 1 "
             f"and 6, and off), 2 workers for echo and broadcast | "
             f"{'; '.join(skipped[k] for k in ('wss', 'wssd-deflate') if k in skipped) or 'ran'} |")
    L.append("")
    L.append("Suites: *echo* = echo 64 B / 16 KiB / 64 B w32, handshakes, idle memory after a "
             f"64 B and after a 16 KiB echo at {IDLE:,} connections; *wss* = the same over TLS "
             "(echo 64 B / 16 KiB, TLS handshakes, memory per idle TLS connection after a 64 B and after a 16 KiB echo); *broadcast* = "
             "`wssd bench -m broadcast -w 4` at " + " and ".join(f"{n:,}" for n in BCAST) +
             " receivers; *deflate* = 16 KiB JSON text echo with `--deflate` and memory per idle "
             f"connection after one at {IDLE:,} connections (wssd: `compression = \"deflate\"` "
             "with the defaults, with `level = 6`, and the same echo with compression off).")
    L.append("")
    L.append(METHOD_DEFLATE + "\n")
    L.append(METHOD_CLUSTER + "\n")
    L.append("## How to reproduce\n")
    L.append("```\nmake bench            # release build, peers, all runs, rewrites docs/benchmarks.md\n"
             "BENCH_SECS=5 BENCH_REPEAT=6 make bench    # longer runs, more repetitions (defaults 2 and 8)\n"
             "BENCH_OUT=- make bench                    # print only\n"
             "BENCH_PEERS=\"uws uws-ssl\" make bench     # only these peers (keys of the table above)\n"
             "BENCH_UWS_DIR=/path/to/uws make bench     # uWebSockets binaries elsewhere\n"
             "BENCH_SUITES=deflate make bench          # only these suites (echo wss broadcast deflate)\n"
             "BENCH_BCAST=1000 bench/scripts/bench-cluster.py   # two instances on one Redis vs one instance (not written here)\n```\n")
    L.append("Knobs (environment, all optional): `BENCH_SECS` seconds per measured run of the interleaved suites (default 2; the single "
             "deflate and 2-worker runs take at least 3, the idle-memory runs 3); "
             "`BENCH_REPEAT` repetitions of the interleaved echo, wss and broadcast runs (default 8; "
             "keep it even so that the ABBA order balances); `BENCH_IDLE` connections of the "
             "idle-memory runs (default 10000); `BENCH_BCAST` broadcast receiver counts (default "
             "\"1000 10000\"); `BENCH_OUT` report file (default docs/benchmarks.md, `-` = stdout; "
             "the hand-written part after the keep marker is kept); `BENCH_PEERS` peer keys (default: "
             "every peer whose binary exists); `BENCH_UWS_DIR`; `BENCH_WSSD` the wssd binary "
             "(default: `bench.sh` builds the profile-guided one with `scripts/pgo-build.sh` and "
             "falls back to target/release/wssd where it cannot; `BENCH_PGO=0` skips it); "
             "`BENCH_SUITES`. With the defaults `make bench` takes "
             f"about {DEFAULT_MINUTES} on this 2-CPU machine, plus about 7 for the profile-guided "
             "build; the interleaved runs, "
             "`BENCH_REPEAT × BENCH_SECS × 22` seconds plus about half a second per run, are most "
             "of it, the idle-memory runs (10,000 connections, about a minute together) the rest.\n")
    L.append("Single runs by hand: start `./target/release/wssd --config FILE` pinned with "
             "`taskset -c 0`, then e.g. `taskset -c 1 ./target/release/wssd bench "
             "ws://127.0.0.1:PORT/echo -c 100 -s 64 -d 5` (over TLS: `wss://127.0.0.1:PORT/echo "
             "--ca-file CERT`). The 10,000-connection idle run needs "
             "`ulimit -n` ≥ 10,100 for both processes (see docs/operations.md, \"Many connections\").")
    L.append("")
    L.append("One row against uWebSockets by hand, in interleaved rounds: `bench/scripts/ab.py SIZE SECS "
             "ROUNDS [MODE]` (e.g. `TLS=1 bench/scripts/ab.py 64 2 8`; `MIX=1` makes each round a whole "
             "repetition of the row's suite, `B=BINARY` adds a second wssd; see its docstring).")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
