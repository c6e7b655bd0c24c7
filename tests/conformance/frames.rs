//! RFC 6455 regressions over raw frames, written by a tiny frame writer of
//! the test's own (not tungstenite), against the real daemon's echo route:
//! the behaviours of the Autobahn|Testsuite most likely to regress
//! (tests/autobahn/run.sh runs the whole suite).

use crate::support::frames::{
    client_frame as frame, Frame, FrameStream, BINARY, CLOSE, CONT, PING, PONG, TEXT,
};
use crate::support::*;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// A close frame with `code` and `reason`.
fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, CLOSE, &payload)
}

/// A raw WebSocket connection to the daemon's `/echo`.
struct Raw(FrameStream);

impl Raw {
    fn open(addr: SocketAddr) -> Raw {
        let mut s = FrameStream::new(TcpStream::connect(addr).expect("connect"));
        s.send(upgrade_request("/echo", "").as_bytes());
        let head = s.read_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Raw(s)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.send(bytes);
    }

    /// The next frame from the server (never masked), `None` at EOF.
    fn next(&mut self) -> Option<Frame> {
        let frame = self.0.next()?;
        assert!(!frame.masked, "server frames must not be masked: {frame:?}");
        Some(frame)
    }

    /// Expects a whole data or control frame with `opcode` and `payload`.
    fn expect(&mut self, opcode: u8, payload: &[u8]) {
        let got = self.next().expect("a frame, not EOF");
        assert_eq!(
            (got.fin, got.opcode, &got.payload[..]),
            (true, opcode, payload),
            "{got:?}"
        );
    }

    /// Expects a close frame and returns its code; then the server must end
    /// the TCP connection (it may wait for our close reply first).
    fn expect_close(&mut self) -> Option<u16> {
        let code = self.next().expect("a close frame, not EOF").close_code();
        // Answer the close (ignored if the server already hung up).
        let _ = self.0.tcp.write_all(&frame(true, CLOSE, &[]));
        assert_eq!(self.next(), None, "the server must close the connection");
        code
    }
}

fn daemon() -> Daemon {
    Daemon::start(&config("", ECHO))
}

#[test]
fn invalid_utf8_in_a_later_fragment_fails_before_the_message_ends() {
    let d = daemon();
    let mut ws = Raw::open(d.addr);
    ws.send(&frame(false, TEXT, "κόσμε".as_bytes()));
    ws.send(&frame(
        false,
        CONT,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
    ));
    // The final fragment never comes: the server must not wait for it.
    assert_eq!(ws.expect_close(), Some(1007));
}

#[test]
fn invalid_utf8_inside_one_frame_fails_before_the_frame_ends() {
    let d = daemon();
    let mut ws = Raw::open(d.addr);
    // A text frame of 1000 bytes; only its first 20 arrive, with an invalid
    // sequence (a UTF-16 surrogate) among them.
    let mut payload = b"hello ".to_vec();
    payload.extend_from_slice(b"\xed\xa0\x80");
    payload.resize(1000, b'a');
    let bytes = frame(true, TEXT, &payload);
    let start = Instant::now();
    ws.send(&bytes[..8 + 20]);
    assert_eq!(ws.expect_close(), Some(1007));
    assert!(start.elapsed() < DEADLINE);
}

#[test]
fn invalid_utf8_in_a_whole_frame_is_1007_after_earlier_messages_are_echoed() {
    let d = daemon();
    let mut ws = Raw::open(d.addr);
    let mut bytes = frame(true, TEXT, b"first");
    bytes.extend(frame(true, BINARY, b"\xff second"));
    bytes.extend(frame(true, TEXT, b"\xc0\xaf overlong"));
    bytes.extend(frame(true, TEXT, b"never echoed"));
    ws.send(&bytes);
    ws.expect(TEXT, b"first");
    ws.expect(BINARY, b"\xff second");
    assert_eq!(ws.expect_close(), Some(1007));
}

#[test]
fn valid_frames_before_a_protocol_error_are_echoed_then_1002() {
    let d = daemon();
    // Reserved opcode, reserved bit, unmasked client frame, fragmented ping,
    // continuation without a start.
    let mut rsv = frame(true, TEXT, b"rsv");
    rsv[0] |= 0x40;
    let mut unmasked = frame(true, TEXT, b"x");
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    unmasked[2] = b'x';
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("reserved opcode 3", frame(true, 0x3, b"")),
        ("reserved control opcode 11", frame(true, 0xb, b"")),
        ("RSV1 set", rsv),
        ("unmasked frame", unmasked),
        ("fragmented ping", frame(false, PING, b"x")),
        ("ping of 126 bytes", frame(true, PING, &[b'p'; 126])),
        ("lone continuation", frame(true, CONT, b"x")),
    ];
    for (what, bad) in bad {
        let mut ws = Raw::open(d.addr);
        let mut bytes = frame(true, TEXT, b"before");
        bytes.extend(frame(true, PING, b"p"));
        bytes.extend(bad);
        bytes.extend(frame(true, TEXT, b"after"));
        ws.send(&bytes);
        ws.expect(TEXT, b"before");
        ws.expect(PONG, b"p");
        assert_eq!(ws.expect_close(), Some(1002), "{what}");
    }
}

#[test]
fn bad_close_codes_are_answered_with_1002() {
    let d = daemon();
    // Autobahn 7.9.x, plus 1015 (TLS failure, never sent) and codes
    // beyond 4999.
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut ws = Raw::open(d.addr);
        ws.send(&close_frame(code, b""));
        assert_eq!(ws.expect_close(), Some(1002), "close code {code}");
    }
    // A one-byte close payload cannot hold a code.
    let mut ws = Raw::open(d.addr);
    ws.send(&frame(true, CLOSE, b"\x03"));
    assert_eq!(ws.expect_close(), Some(1002), "one-byte close payload");
    // A reason that is not UTF-8.
    let mut ws = Raw::open(d.addr);
    ws.send(&close_frame(
        1000,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
    ));
    assert_eq!(ws.expect_close(), Some(1007), "invalid UTF-8 reason");
}

#[test]
fn valid_close_codes_are_echoed() {
    let d = daemon();
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999,
    ] {
        let mut ws = Raw::open(d.addr);
        ws.send(&close_frame(code, b"bye"));
        assert_eq!(ws.expect_close(), Some(code), "close code {code}");
    }
    let mut ws = Raw::open(d.addr);
    ws.send(&frame(true, CLOSE, b""));
    assert_eq!(ws.expect_close(), None, "empty close");
}

#[test]
fn control_frames_inside_a_fragmented_message() {
    let d = daemon();
    let mut ws = Raw::open(d.addr);
    let mut bytes = frame(false, TEXT, b"frag");
    bytes.extend(frame(true, PING, b"ping 1"));
    bytes.extend(frame(false, CONT, "mé".as_bytes()));
    bytes.extend(frame(true, PONG, b"unsolicited"));
    bytes.extend(frame(true, PING, b"ping 2"));
    bytes.extend(frame(true, CONT, b"nts"));
    ws.send(&bytes);
    ws.expect(PONG, b"ping 1");
    ws.expect(PONG, b"ping 2");
    ws.expect(TEXT, "fragménts".as_bytes());
    // A close in the middle of a fragmented message is answered at once.
    ws.send(&frame(false, BINARY, b"part"));
    ws.send(&close_frame(1000, b""));
    assert_eq!(ws.expect_close(), Some(1000));
}

#[test]
fn a_message_split_byte_by_byte_across_tcp_writes() {
    let d = daemon();
    let mut ws = Raw::open(d.addr);
    // A fragmented text message with a multi-byte character split across
    // the fragments, then a 300-byte binary frame (16-bit length), each
    // written one byte per TCP segment.
    let text = "κόσμε ✓ byte by byte";
    let bytes = text.as_bytes();
    let mut wire = frame(false, TEXT, &bytes[..2]);
    wire.extend(frame(false, CONT, &bytes[2..3]));
    wire.extend(frame(true, CONT, &bytes[3..]));
    let binary: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    wire.extend(frame(true, BINARY, &binary));
    for b in &wire {
        ws.send(std::slice::from_ref(b));
    }
    ws.expect(TEXT, bytes);
    ws.expect(BINARY, &binary);
    ws.send(&close_frame(1000, b""));
    assert_eq!(ws.expect_close(), Some(1000));
}

#[test]
fn valid_text_cut_inside_a_character_is_not_failed() {
    // The fail-fast UTF-8 check must not fire on valid text that is merely
    // incomplete: a character cut by the TCP segmentation waits for its
    // rest. Had the server failed the connection, its close frame would
    // come before (instead of) the echo.
    let d = daemon();
    let mut ws = Raw::open(d.addr);
    let text = "€€€ κόσμε";
    let bytes = frame(true, TEXT, text.as_bytes());
    for cut in [6, 7, 8, 9, 10, 11, 12, 13, 14] {
        ws.send(&bytes[..cut]);
        ws.send(&bytes[cut..]);
        ws.expect(TEXT, text.as_bytes());
    }
    // Also across fragments, with a ping between the halves of a character.
    let mut wire = frame(false, TEXT, &text.as_bytes()[..1]);
    wire.extend(frame(true, PING, b""));
    wire.extend(frame(true, CONT, &text.as_bytes()[1..]));
    ws.send(&wire[..9]);
    ws.send(&wire[9..]);
    ws.expect(PONG, b"");
    ws.expect(TEXT, text.as_bytes());
}

#[test]
fn a_peer_that_reads_only_after_the_close_handshake_gets_the_whole_echo_and_the_close_reply() {
    echo_and_close_reply_behind_a_full_socket(false);
}

#[test]
fn a_peer_that_shut_down_its_sending_half_still_gets_the_whole_echo_and_the_close_reply() {
    echo_and_close_reply_behind_a_full_socket(true);
}

/// The client sends a message larger than the sockets hold and its close
/// frame in one write (then shuts down its sending half if `half_close`),
/// and reads only once the server has ended the connection for its
/// handler (/status counts no connection). The echo and the close reply
/// still wait behind the full socket then; the server must send them
/// before it hangs up (it used to drop what the socket had not taken: the
/// peer got a cut frame and EOF). The client's receive buffer is kept
/// small so that the server's send buffer (at most tcp_wmem's 4 MiB)
/// cannot hold the echo.
fn echo_and_close_reply_behind_a_full_socket(half_close: bool) {
    let d = Daemon::start(&(config("", ECHO) + "\n[status]\nlisten = \"127.0.0.1:0\"\n"));
    let status: SocketAddr = d.wait_log("the status listener", |l| {
        l.split("status listener on ")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
    });
    let open_connections = || {
        let reply = raw_exchange(
            status,
            b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).expect("/status is JSON");
        json["totals"]["connections"]
            .as_u64()
            .expect("totals.connections")
    };
    let mut ws = Raw::open(d.addr);
    nix::sys::socket::setsockopt(&ws.0.tcp, nix::sys::socket::sockopt::RcvBuf, &65536)
        .expect("SO_RCVBUF");
    wait_for("the connection to be counted", || {
        (open_connections() == 1).then_some(())
    });
    let payload: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut wire = frame(true, BINARY, &payload);
    wire.extend(close_frame(1000, b"bye"));
    ws.send(&wire);
    if half_close {
        ws.0.tcp
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    }
    wait_for("the server to finish the close handshake", || {
        (open_connections() == 0).then_some(())
    });
    ws.expect(BINARY, &payload);
    assert_eq!(ws.expect_close(), Some(1000));
}
