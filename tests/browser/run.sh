#!/usr/bin/env bash
# Headless Chromium against wssd with permessage-deflate (issue 12): the
# browser must negotiate the extension with the daemon and round-trip a
# 1 MB compressible text message.
#
#   tests/browser/run.sh        (needs Debian's `chromium`; builds wssd)
#
# Chromium (the real browser, not a driver) opens tests/browser/page.html
# from a file:// URL with the daemon's address in the query; the page
# writes PASS or FAIL into the DOM, which --dump-dom prints. Exit 0 on
# PASS. Not run by .ci/run: a Chromium start costs more than the test.
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

# --virtual-time-budget lets the page's script run to its end before the
# DOM is dumped (virtual time waits for the network).
DOM=$(timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update \
    --disable-sync --user-data-dir="$WORK/profile" --virtual-time-budget=60000 \
    --dump-dom "file://$ROOT/tests/browser/page.html?ws=ws://$ADDR/echo" 2>"$WORK/chromium.log")
RESULT=$(echo "$DOM" | sed -n 's/.*<pre id="result">\([^<]*\)<.*/\1/p')
echo "browser: $RESULT"
case "$RESULT" in
    PASS*permessage-deflate*) exit 0 ;;
    *)
        tail -20 "$WORK/chromium.log" >&2
        exit 1
        ;;
esac
