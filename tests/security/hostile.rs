//! Hostile frames and request heads, written byte by byte with a tiny
//! frame writer (not tungstenite): each gets the RFC's answer, and the
//! daemon keeps serving everyone else.

use crate::support::frames::{head_end, parse_all, raw_frame as frame, Frame, TEXT};
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use tungstenite::Message;

fn text(fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, 0x1, true, payload)
}

/// Opens a raw WebSocket, sends `bytes`, returns the server's frames
/// until it closes the connection.
fn exchange(d: &Daemon, bytes: &[u8]) -> Vec<Frame> {
    let mut request = upgrade_request("/echo", "").into_bytes();
    request.extend_from_slice(bytes);
    let all = raw_exchange_bytes(d.addr, &request);
    assert!(all.starts_with(b"HTTP/1.1 101"), "{all:?}");
    parse_all(&all[head_end(&all).expect("a response head")..])
}

/// The close code in the last frame, which must be a close frame with one.
fn close_code(frames: &[Frame]) -> u16 {
    let last = frames.last().expect("at least a close frame");
    last.close_code()
        .unwrap_or_else(|| panic!("no code: {frames:?}"))
}

#[test]
fn each_hostile_frame_gets_its_close_code() {
    let d = Daemon::start(&config("max_message_size = 65536", ECHO));
    let mut bystander = connect(&d.url("/echo"));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "reserved bit set",
            frame(true, 0b100, 0x1, true, b"hi"),
            1002,
        ),
        (
            "unknown data opcode",
            frame(true, 0, 0x3, true, b"hi"),
            1002,
        ),
        (
            "unknown control opcode",
            frame(true, 0, 0xb, true, b""),
            1002,
        ),
        (
            "unmasked client frame",
            frame(true, 0, 0x1, false, b"hi"),
            1002,
        ),
        (
            "ping over 125 bytes",
            frame(true, 0, 0x9, true, &[0u8; 126]),
            1002,
        ),
        ("fragmented ping", frame(false, 0, 0x9, true, b"p"), 1002),
        (
            "continuation without start",
            frame(true, 0, 0x0, true, b"x"),
            1002,
        ),
        (
            "new message inside a fragmented one",
            [text(false, b"a"), text(true, b"b")].concat(),
            1002,
        ),
        ("invalid UTF-8 in text", text(true, b"ok\xff"), 1007),
        (
            "invalid UTF-8 split across fragments",
            [text(false, b"\xce"), frame(true, 0, 0, true, b"\xff")].concat(),
            1007,
        ),
        (
            "invalid UTF-8 in a close reason",
            frame(true, 0, 0x8, true, b"\x03\xe8\xff\xfe"),
            1007,
        ),
        (
            "close code 999",
            frame(true, 0, 0x8, true, &999u16.to_be_bytes()),
            1002,
        ),
        (
            "close code 1005 on the wire",
            frame(true, 0, 0x8, true, &1005u16.to_be_bytes()),
            1002,
        ),
        (
            "close payload of one byte",
            frame(true, 0, 0x8, true, b"\x03"),
            1002,
        ),
        (
            "message over max_message_size",
            frame(true, 0, 0x2, true, &vec![0u8; 70_000]),
            1009,
        ),
        (
            "length field of 2^62",
            {
                let mut f = vec![0x82, 0xff];
                f.extend_from_slice(&(1u64 << 62).to_be_bytes());
                f.extend_from_slice(&[1, 2, 3, 4]);
                f
            },
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let frames = exchange(&d, &bytes);
        assert_eq!(close_code(&frames), code, "{what}: {frames:?}");
        echo(&mut bystander, Message::text(format!("after {what}")));
    }
}

#[test]
fn valid_frames_before_an_error_are_echoed_first() {
    let d = Daemon::start(&config("", ECHO));
    let bytes = [text(true, b"first"), text(true, b"\xff")].concat();
    let frames = exchange(&d, &bytes);
    assert_eq!(
        (frames[0].opcode, &frames[0].payload[..]),
        (TEXT, &b"first"[..])
    );
    assert_eq!(close_code(&frames), 1007);
}

#[test]
fn a_message_split_byte_by_byte_is_reassembled() {
    let d = Daemon::start(&config("", ECHO));
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let bytes = [
        text(false, "héllo ".as_bytes()),
        frame(true, 0, 0, true, "wörld".as_bytes()),
    ]
    .concat();
    for b in bytes {
        s.write_all(&[b]).unwrap();
    }
    s.write_all(&frame(true, 0, 0x8, true, &1000u16.to_be_bytes()))
        .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let frames = parse_all(&all[head_end(&all).expect("a response head")..]);
    assert_eq!(
        (frames[0].opcode, &frames[0].payload[..]),
        (TEXT, "héllo wörld".as_bytes())
    );
    assert_eq!(close_code(&frames), 1000);
}

#[test]
fn hostile_request_heads_get_http_errors() {
    let d = Daemon::start(&config("", ECHO));
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases = [
        (
            "garbage",
            b"\x00\x01\x02\x03 not http at all\r\n\r\n".to_vec(),
            "400",
        ),
        ("bad request line", b"GET\r\n\r\n".to_vec(), "400"),
        (
            "HTTP/1.0",
            b"GET /echo HTTP/1.0\r\nHost: x\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "too many headers",
            upgrade_request("/echo", &many_headers).into_bytes(),
            "431",
        ),
        (
            "oversized head",
            upgrade_request("/echo", &format!("X: {}\r\n", "a".repeat(20_000))).into_bytes(),
            "431",
        ),
        (
            "bad key",
            upgrade_request("/echo", "")
                .replace("dGhlIHNhbXBsZSBub25jZQ==", "short")
                .into_bytes(),
            "400",
        ),
        (
            "no Host",
            upgrade_request("/echo", "")
                .replace("Host: localhost\r\n", "")
                .into_bytes(),
            "400",
        ),
        (
            "absolute-form target",
            upgrade_request("/echo", "")
                .replace("GET /echo", "GET http://x/echo")
                .into_bytes(),
            "400",
        ),
    ];
    for (what, bytes, status) in cases {
        let reply = raw_exchange(d.addr, &bytes);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {reply}"
        );
    }
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("still serving"),
    );
}
