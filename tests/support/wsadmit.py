#!/usr/bin/env python3
"""Admission probes for wssd's tests, with Python `websockets` as the client.

    wsadmit.py try URL [options]       connect once; print "open SUBPROTOCOL REPLY"
                                       or "status NNN HEADER=VALUE... body=BODY"
    wsadmit.py hold URL N [options]    open N connections one after the other,
                                       printing a line each as `try` does, then
                                       "done", and keep them open until killed

Options: --proto NAME (offered subprotocol, repeatable), --header NAME:VALUE
(additional_headers, repeatable), --from ADDR (bind the client socket to ADDR
before connecting), --send TEXT (send TEXT once open; its reply is REPLY).
"""
import asyncio
import sys

import websockets

SHOWN_HEADERS = ("retry-after", "www-authenticate", "content-type")


def options(args):
    opts = {"proto": [], "header": [], "from": None, "send": None}
    it = iter(args)
    for flag in it:
        value = next(it)
        key = flag.lstrip("-")
        if key in ("proto", "header"):
            opts[key].append(value)
        else:
            opts[key] = value
    return opts


async def attempt(url, opts):
    """One connection: (line to print, open connection or None)."""
    kwargs = {}
    if opts["proto"]:
        kwargs["subprotocols"] = opts["proto"]
    if opts["header"]:
        kwargs["additional_headers"] = [tuple(h.split(":", 1)) for h in opts["header"]]
    if opts["from"]:
        kwargs["local_addr"] = (opts["from"], 0)
    try:
        ws = await asyncio.wait_for(websockets.connect(url, **kwargs), 60)
    except websockets.InvalidStatus as e:
        r = e.response
        shown = " ".join(
            f"{k}={r.headers[k]}" for k in SHOWN_HEADERS if k in r.headers
        )
        body = r.body.decode("utf-8", "replace").strip()
        return f"status {r.status_code} {shown} body={body}", None
    reply = "-"
    if opts["send"] is not None:
        await ws.send(opts["send"])
        reply = await asyncio.wait_for(ws.recv(), 60)
    return f"open {ws.subprotocol or '-'} {reply}", ws


async def try_once(url, args):
    line, ws = await attempt(url, options(args))
    print(line, flush=True)
    if ws is not None:
        await ws.close()


async def hold(url, n, args):
    opts = options(args)
    held = []
    for _ in range(int(n)):
        line, ws = await attempt(url, opts)
        print(line, flush=True)
        if ws is not None:
            held.append(ws)
    print("done", flush=True)
    await asyncio.Future()  # until killed


def main():
    cmd, url, *rest = sys.argv[1:]
    if cmd == "try":
        asyncio.run(try_once(url, rest))
    elif cmd == "hold":
        asyncio.run(hold(url, rest[0], rest[1:]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
