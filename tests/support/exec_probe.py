#!/usr/bin/env python3
"""Python `websockets` as an independent client of exec routes.

    exec_probe.py lines URL    send lines, expect each back (a `cat` route); print "ok"
    exec_probe.py collect URL [PROTO...]
                               print every text message, then "closed CODE REASON";
                               with PROTOs, offer them as subprotocols and print
                               "subprotocol NAME" (or "-") first
"""
import asyncio
import sys

import websockets


async def lines(url):
    async with websockets.connect(url) as ws:
        for msg in ["hello", "héllo wörld ✓ 日本", "", "x" * 10000]:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 60)
            if got != msg:
                sys.exit(f"mismatch: sent {msg[:40]!r}, got {got[:40]!r}")
    print("ok")


async def collect(url, *protos):
    kwargs = {"subprotocols": list(protos)} if protos else {}
    async with websockets.connect(url, max_size=None, **kwargs) as ws:
        if protos:
            print(f"subprotocol {ws.subprotocol or '-'}", flush=True)
        try:
            while True:
                msg = await asyncio.wait_for(ws.recv(), 60)
                print(msg if isinstance(msg, str) else f"binary {msg!r}", flush=True)
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            reason = e.rcvd.reason if e.rcvd else ""
            print(f"closed {code} {reason}", flush=True)


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    asyncio.run({"lines": lines, "collect": collect}[mode](url, *rest))
