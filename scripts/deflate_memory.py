"""Memory per idle connection of a wssd worker, with Python websockets
clients (docs/compression.md, "Memory per connection").

    python3 scripts/deflate_memory.py URL WORKER_PID N [deflate|off]

Opens N connections to URL (an echo route), each offering
`permessage-deflate; client_max_window_bits` as browsers do (or nothing
with `off`), echoes one 16 KiB JSON-like text on each, and prints the
worker's VmRSS before and after and the difference per connection.
"""
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


def text_16k():
    unit = '{"user":"alice","room":"lobby","text":"hello, world","n":12345},'
    return (unit * (16384 // len(unit) + 1))[:16384]


async def main(url, pid, n, mode):
    exts = [ClientPerMessageDeflateFactory(client_max_window_bits=True)] if mode == "deflate" else None
    text = text_16k()
    # Warm the worker: its shared compressor and inflater exist from now.
    async with connect(url, extensions=exts, compression=None) as ws:
        await ws.send(text)
        await ws.recv()
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    conns = []
    for i in range(n):
        ws = await connect(url, extensions=exts, compression=None, ping_interval=None, open_timeout=60)
        if exts is not None:
            assert ws.protocol.extensions, "permessage-deflate not negotiated"
        await ws.send(text)
        assert await ws.recv() == text
        conns.append(ws)
    await asyncio.sleep(1)
    after = rss_kib(pid)
    print("mode %s connections %d rss_before_kib %d rss_after_kib %d per_conn_bytes %.0f"
          % (mode, n, before, after, (after - before) * 1024.0 / n))
    for ws in conns:
        await ws.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                     sys.argv[4] if len(sys.argv) > 4 else "deflate"))
