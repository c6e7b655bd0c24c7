#!/usr/bin/env python3
"""Independent WebSocket test server for the wssd client tests.

Uses the Python `websockets` library (asyncio API). Binds 127.0.0.1 on a
free port and prints "PORT <n>" on stdout once it listens.

Usage: ws_server.py [--cert CERT.pem --key KEY.pem]

Behaviour per received message:
  - "headers?"        -> a JSON object: {"path": request path, "headers": {lowercased name: value}}
  - "close:CODE:TEXT"  -> the server closes with that code and reason
  - "ping-me"          -> the server pings, waits for the pong, then sends "pong-received"
  - "frames-next"      -> the next message is read frame by frame and answered
                          with "frames=<count> bytes=<total>"
  - "subprotocol?"     -> the negotiated subprotocol or "none"
  - "push:N"           -> sends N text messages "push-1".."push-N"
  - anything else      -> echoed back (text as text, binary as binary)
Request path "/forbidden" is refused with HTTP 403 before the handshake.
"""

import argparse
import asyncio
import json
import ssl
import sys
from http import HTTPStatus

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def process_request(connection, request):
    if request.path.startswith("/forbidden"):
        return connection.respond(HTTPStatus.FORBIDDEN, "forbidden by test server\n")
    return None


def select_subprotocol(connection, offered):
    for name in offered:
        if name in ("chat", "superchat"):
            return name
    return None


async def count_frames(websocket):
    frames = 0
    total = 0
    async for fragment in websocket.recv_streaming():
        frames += 1
        total += len(fragment.encode() if isinstance(fragment, str) else fragment)
    return frames, total


async def handler(websocket):
    try:
        await respond(websocket)
    except ConnectionClosed:
        pass  # the client went away; nothing to report


async def respond(websocket):
    async for message in websocket:
        if message == "headers?":
            headers = {k.lower(): v for k, v in websocket.request.headers.raw_items()}
            await websocket.send(json.dumps({"path": websocket.request.path, "headers": headers}))
        elif isinstance(message, str) and message.startswith("close:"):
            _, code, reason = message.split(":", 2)
            await websocket.close(int(code), reason)
            return
        elif message == "ping-me":
            waiter = await websocket.ping(b"are-you-there")
            await asyncio.wait_for(waiter, 20)
            await websocket.send("pong-received")
        elif message == "frames-next":
            frames, total = await count_frames(websocket)
            await websocket.send(f"frames={frames} bytes={total}")
        elif message == "subprotocol?":
            await websocket.send(websocket.subprotocol or "none")
        elif isinstance(message, str) and message.startswith("push:"):
            for i in range(int(message[5:])):
                await websocket.send(f"push-{i + 1}")
        else:
            await websocket.send(message)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
    async with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=context,
        process_request=process_request,
        max_size=16 * 1024 * 1024,
        select_subprotocol=select_subprotocol,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
