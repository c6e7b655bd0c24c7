"""Polls the page's verdict through Chromium's DevTools protocol:
cdp_result.py DEVTOOLS_PORT prints the text of #result once it is no
longer "pending" (within 120 s)."""
import asyncio
import json
import sys
import time
import urllib.request

from websockets.asyncio.client import connect


def page_ws(port):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%s/json" % port) as r:
                for target in json.load(r):
                    if target.get("type") == "page":
                        return target["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("no DevTools page target")


async def main(port):
    async with connect(page_ws(port), max_size=None) as ws:
        deadline = time.time() + 120
        n = 0
        while time.time() < deadline:
            n += 1
            await ws.send(json.dumps({"id": n, "method": "Runtime.evaluate", "params": {
                "expression": "document.getElementById('result') && document.getElementById('result').textContent"}}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == n:
                    break
            text = reply.get("result", {}).get("result", {}).get("value")
            if text and text != "pending":
                print(text)
                return
            await asyncio.sleep(0.2)
        print("FAIL timeout")


asyncio.run(main(sys.argv[1]))
