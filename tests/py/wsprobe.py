#!/usr/bin/env python3
"""An independent WebSocket client (Python `websockets`) for wssd's tests.

    wsprobe.py echo URL      text, binary and a 1 MB message must come back unchanged
    wsprobe.py hold URL      print "open", wait for the server to close, print "closed CODE"
    wsprobe.py status URL    try to connect; print "status NNN" for an HTTP refusal, "open" otherwise
"""
import asyncio
import os
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


def main():
    mode, url = sys.argv[1], sys.argv[2]
    asyncio.run({"echo": echo, "hold": hold, "status": status}[mode](url))


if __name__ == "__main__":
    main()
