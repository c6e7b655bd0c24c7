#!/usr/bin/env bash
# Headless Chromium against wssd with permessage-deflate (issue 12): the
# browser must negotiate the extension with the daemon and round-trip a
# 1 MB compressible text message.
#
#   tests/browser/run.sh        (needs Debian's `chromium`; builds wssd)
#
# Chromium (the real browser, not a driver) opens tests/browser/page.html
# from a file:// URL with the daemon's address in the query; the page
# writes PASS or FAIL into the DOM, read through the DevTools protocol
# (tests/browser/cdp_result.py, Python websockets). Exit 0 on PASS. Not run by .ci/run: a Chromium start costs more than the test.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CHROMIUM=${CHROMIUM:-chromium}
command -v "$CHROMIUM" >/dev/null || {
    echo "browser: $CHROMIUM not found (apt-get install chromium)" >&2
    exit 2
}
WORK=$(mktemp -d)
WSSD=
cleanup() {
    if [ -n "$WSSD" ]; then
        kill -TERM "$WSSD" 2>/dev/null || true
        wait "$WSSD" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --quiet --bin wssd)
cat >"$WORK/wssd.toml" <<'TOML'
[server]
listen = "127.0.0.1:0"
workers = 1
compression = "deflate"
max_message_size = "4MiB"
[log]
level = "info"
[[routes]]
path = "/echo"
handler = "echo"
TOML
"$ROOT/target/debug/wssd" --config "$WORK/wssd.toml" 2>"$WORK/wssd.log" &
WSSD=$!
for _ in $(seq 1 600); do
    grep -q 'listening on' "$WORK/wssd.log" && break
    kill -0 "$WSSD" 2>/dev/null || { cat "$WORK/wssd.log" >&2; exit 1; }
    sleep 0.1
done
ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/wssd.log" | head -1)
[ -n "$ADDR" ] || { echo "browser: wssd did not listen" >&2; exit 1; }

# Chromium runs the page; its verdict is read through the DevTools
# protocol (--dump-dom would not wait for the WebSocket).
DEVTOOLS=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update \
    --disable-sync --user-data-dir="$WORK/profile" --remote-debugging-port="$DEVTOOLS" \
    "file://$ROOT/tests/browser/page.html?ws=ws://$ADDR/echo" 2>"$WORK/chromium.log" &
CHROME=$!
RESULT=$(timeout 180 python3 "$ROOT/tests/browser/cdp_result.py" "$DEVTOOLS" || echo "FAIL no verdict")
kill -TERM "$CHROME" 2>/dev/null || true
wait "$CHROME" 2>/dev/null || true
echo "browser: $RESULT"
case "$RESULT" in
    PASS*permessage-deflate*) exit 0 ;;
    *)
        tail -20 "$WORK/chromium.log" >&2
        exit 1
        ;;
esac
