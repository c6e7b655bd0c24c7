#!/usr/bin/env python3
"""An independent WebSocket client (Python `websockets`) for wssd's tests.

    wsprobe.py echo URL      text, binary and a 1 MB message must come back unchanged
    wsprobe.py hold URL      print "open", wait for the server to close, print "closed CODE"
    wsprobe.py status URL    try to connect; print "status NNN" for an HTTP refusal, "open" otherwise
    wsprobe.py echo-tls URL CAFILE [1.2|1.3]   echo over wss:// verified against CAFILE (only that TLS
                             version if given); print "ok SERIAL VERSION"
    wsprobe.py many URL N    N concurrent connections each echo their own message
"""
import asyncio
import os
import ssl
import sys

import websockets


async def echo(url):
    async with websockets.connect(url, max_size=None) as ws:
        for msg in ["hello", "héllo wörld ✓ 日本", b"\x00\x01\xfe\xff" * 16, os.urandom(1_000_000)]:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 60)
            if got != msg:
                sys.exit(f"echo mismatch for a {type(msg).__name__} of {len(msg)}")
    print("ok")


async def hold(url):
    async with websockets.connect(url) as ws:
        print("open", flush=True)
        try:
            while True:
                msg = await ws.recv()
                print(f"message {msg}", flush=True)
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            print(f"closed {code}", flush=True)


async def status(url):
    try:
        async with websockets.connect(url):
            print("open")
    except websockets.InvalidStatus as e:
        print(f"status {e.response.status_code}")


def tls_context(cafile, version=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if version:
        v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
        ctx.minimum_version = ctx.maximum_version = v
    return ctx


async def echo_tls(url, cafile, version=None):
    """Echo over wss:// with certificate verification against CAFILE;
    prints "ok SERIAL VERSION" with the server certificate's serial
    number and the TLS version negotiated."""
    async with websockets.connect(url, ssl=tls_context(cafile, version), max_size=None) as ws:
        for msg in ["secure hello", os.urandom(100_000)]:
            await ws.send(msg)
            if await asyncio.wait_for(ws.recv(), 60) != msg:
                sys.exit("echo mismatch over TLS")
        cert = ws.transport.get_extra_info("peercert")
        tls = ws.transport.get_extra_info("ssl_object")
        print("ok", cert["serialNumber"], tls.version())


async def flood_tls(url, cafile, n, size):
    """Over wss://, sends N random binary messages of SIZE bytes while
    reading their echoes, which must come back whole and in order; the
    server meets a full socket on the way (its records then wait for the
    socket). Prints "ok N"."""
    n, size = int(n), int(size)
    sent = [os.urandom(size) for _ in range(n)]
    async with websockets.connect(url, ssl=tls_context(cafile), max_size=None) as ws:
        async def send_all():
            for m in sent:
                await ws.send(m)

        sender = asyncio.create_task(send_all())
        for i, m in enumerate(sent):
            got = await asyncio.wait_for(ws.recv(), 60)
            if got != m:
                sys.exit(f"message {i} came back different ({len(got)} bytes)")
        await sender
    print("ok", n)


async def many(url, n):
    """Open N connections at once; each echoes a message of its own."""
    n = int(n)
    conns = await asyncio.gather(*[websockets.connect(url) for _ in range(n)])
    try:
        for i, ws in enumerate(conns):
            await ws.send(f"client {i}")
        for i, ws in enumerate(conns):
            got = await asyncio.wait_for(ws.recv(), 60)
            if got != f"client {i}":
                sys.exit(f"client {i} got {got!r}")
    finally:
        await asyncio.gather(*[ws.close() for ws in conns])
    print("ok", n)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    modes = {"echo": echo, "hold": hold, "status": status, "echo-tls": echo_tls, "many": many,
             "flood-tls": flood_tls}
    asyncio.run(modes[mode](*args))


if __name__ == "__main__":
    main()
