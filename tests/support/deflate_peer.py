"""permessage-deflate peer for tests/conformance/compression.rs, with Python websockets
(which offers and accepts permessage-deflate by default).

  deflate_peer.py client URL SIZE   echo a SIZE-byte compressible text and a
                                    binary; print the negotiated extensions
  deflate_peer.py server            serve an echo on a free port; print
                                    "PORT <n>", then one line per connection
                                    with its negotiated extensions
"""
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve


def text_of(size):
    unit = '{"user":"alice","room":"lobby","text":"hello, world","n":12345},'
    return (unit * (size // len(unit) + 1))[:size]


async def client(url, size):
    async with connect(url, max_size=None) as ws:
        exts = [e.name for e in ws.protocol.extensions]
        text = text_of(size)
        await ws.send(text)
        assert await ws.recv() == text, "text echo differs"
        data = text.encode()[::-1]
        await ws.send(data)
        assert await ws.recv() == data, "binary echo differs"
        print("extensions", ",".join(exts) or "none", flush=True)


async def server():
    async def echo(ws):
        print("extensions", ",".join(e.name for e in ws.protocol.extensions) or "none", flush=True)
        async for m in ws:
            await ws.send(m)

    async with serve(echo, "127.0.0.1", 0, max_size=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        print("PORT", port, flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    if sys.argv[1] == "client":
        asyncio.run(client(sys.argv[2], int(sys.argv[3])))
    else:
        asyncio.run(server())
