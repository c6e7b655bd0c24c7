#!/usr/bin/env python3
"""A WebSocket test server for `wssd bench`, built on the `websockets` package.

It listens on 127.0.0.1, port 0 (the kernel picks), prints `PORT <n>` on
stdout once listening and serves until killed.

Modes:
  echo (default)   echo every message back unchanged.
  --corrupt N      echo, but flip one byte of the N-th message (counted over
                   all connections, 1-based).
  --close-after N  echo, but close the connection that sends the N-th
                   message (counted over all connections) with code 1011
                   instead of echoing it.
  --fragment       echo every message as three fragments.
  --reject         refuse every upgrade with 403 Forbidden.
  --ping-interval S, --ping-timeout S
                   ping every S seconds; close if no pong within S seconds.
  --ping-first     before echoing a message, ping its sender and wait (with
                   no time limit) for the pong: a client that does not
                   answer pings never gets its echo.
  --broadcast      every message goes to every client connected to the same
                   path, the sender included (with --exclude-sender: not
                   the sender).
"""

import argparse
import asyncio
import sys
from http import HTTPStatus

try:
    import websockets
    from websockets.asyncio.server import broadcast, serve
except ImportError:  # pragma: no cover - reported to the test
    sys.stderr.write("the python 'websockets' package is required: pip install websockets\n")
    sys.exit(3)


def corrupt(message):
    """Returns `message` with its middle byte changed (kept ASCII)."""
    if isinstance(message, str):
        data = bytearray(message.encode())
    else:
        data = bytearray(message)
    if data:
        i = len(data) // 2
        data[i] = ord("#") if data[i] != ord("#") else ord("%")
    return data.decode() if isinstance(message, str) else bytes(data)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--corrupt", type=int, default=0)
    parser.add_argument("--close-after", type=int, default=0)
    parser.add_argument("--broadcast", action="store_true")
    parser.add_argument("--exclude-sender", action="store_true")
    parser.add_argument("--fragment", action="store_true")
    parser.add_argument("--reject", action="store_true")
    parser.add_argument("--ping-interval", type=float, default=None)
    parser.add_argument("--ping-timeout", type=float, default=None)
    parser.add_argument("--ping-first", action="store_true")
    args = parser.parse_args()
    count = 0
    rooms = {}

    async def echo(ws):
        nonlocal count
        try:
            async for message in ws:
                count += 1
                if count == args.corrupt:
                    message = corrupt(message)
                if args.ping_first:
                    await (await ws.ping())
                if count == args.close_after:
                    await ws.close(1011, "closing as asked")
                    return
                if args.fragment and len(message) >= 3:
                    third = len(message) // 3
                    await ws.send([message[:third], message[third:2 * third],
                                   message[2 * third:]])
                else:
                    await ws.send(message)
        except websockets.ConnectionClosed:
            pass  # the bench drops connections it finds faulty

    async def room(ws):
        members = rooms.setdefault(ws.request.path, set())
        members.add(ws)
        try:
            async for message in ws:
                targets = members - {ws} if args.exclude_sender else members
                broadcast(targets, message)
        except websockets.ConnectionClosed:
            pass
        finally:
            members.discard(ws)

    def reject(connection, request):
        return connection.respond(HTTPStatus.FORBIDDEN, "no WebSocket here\n")

    handler = room if args.broadcast else echo
    async with serve(handler, "127.0.0.1", 0, max_size=None, compression=None,
                     ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
                     process_request=reject if args.reject else None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
