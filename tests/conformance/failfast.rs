//! The frame reader of an open connection, over raw frames against the
//! real daemon: reserved bits without an extension fail the connection
//! with 1002, and invalid UTF-8 fails a text message with 1007 as soon as
//! the bad bytes arrive, long before the rest of the message (issue 10).

use crate::support::frames::{client_frame, raw_frame, BINARY, CONT, PING, TEXT};
use crate::support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A raw connection to the daemon's `/echo`, past the 101.
fn open(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("the 101 response");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    tcp
}

/// Reads one unmasked server frame: (opcode, payload), or `None` at EOF.
fn next_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    match tcp.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading from the daemon: {e} (nothing within {DEADLINE:?}?)"),
    }
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload).expect("a frame's payload");
    Some((h[0] & 0x0f, payload))
}

/// Expects a close frame (after any echoes, which must be `echoes`), its
/// code, then the end of the TCP connection.
fn expect_close(tcp: &mut TcpStream, echoes: &[&[u8]]) -> u16 {
    for want in echoes {
        let (op, payload) = next_frame(tcp).expect("an echo");
        assert!(
            op == TEXT || op == BINARY,
            "expected an echo, got opcode {op}"
        );
        assert_eq!(&payload[..], *want);
    }
    let (op, payload) = next_frame(tcp).expect("a close frame");
    assert_eq!(op, 0x8, "expected a close frame, got opcode {op}");
    assert!(payload.len() >= 2, "the close frame has a code");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    // Answer it; the daemon must then hang up (it may have already).
    let _ = tcp.write_all(&client_frame(true, 0x8, &payload[..2]));
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    code
}

#[test]
fn rsv1_without_a_negotiated_extension_is_1002() {
    let d = Daemon::start(&config("", ECHO));
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "RSV1 on a text frame",
            raw_frame(true, 4, TEXT, true, b"deflated?"),
        ),
        (
            "RSV1 on a binary frame",
            raw_frame(true, 4, BINARY, true, b"\x00"),
        ),
        ("RSV1 on a ping", raw_frame(true, 4, PING, true, b"")),
    ];
    for (what, bad) in cases {
        let mut tcp = open(d.addr);
        // A valid message first: it is echoed, then the connection fails.
        let mut bytes = client_frame(true, TEXT, b"before");
        bytes.extend(bad);
        tcp.write_all(&bytes).unwrap();
        assert_eq!(expect_close(&mut tcp, &[b"before"]), 1002, "{what}");
    }
    // RSV1 on a continuation frame (only a message's first frame may
    // carry it, and only with an extension).
    let mut tcp = open(d.addr);
    let mut bytes = client_frame(false, TEXT, b"a");
    bytes.extend(raw_frame(true, 4, CONT, true, b"b"));
    tcp.write_all(&bytes).unwrap();
    assert_eq!(expect_close(&mut tcp, &[]), 1002);
}

#[test]
fn invalid_utf8_in_the_first_read_of_a_large_text_message_is_1007_before_the_rest() {
    let d = Daemon::start(&config("", ECHO));
    // A 1 MiB text frame whose first bytes hold an invalid sequence (an
    // overlong '/'). Only the header and 1,000 bytes are ever sent.
    let mut payload = b"fine so far ".to_vec();
    payload.extend_from_slice(b"\xc0\xaf");
    payload.resize(1 << 20, b'a');
    let frame = client_frame(true, TEXT, &payload);
    let mut tcp = open(d.addr);
    tcp.write_all(&frame[..14 + 1000]).unwrap();
    assert_eq!(expect_close(&mut tcp, &[]), 1007);
}

#[test]
fn invalid_utf8_split_across_reads_in_a_fragmented_message_is_1007_before_the_rest() {
    let d = Daemon::start(&config("", ECHO));
    // A text message in fragments: the first ends inside a character
    // ("€" is e2 82 ac), the second's first bytes end it wrongly. The
    // message is announced as 1 MiB in its second fragment, of which only
    // the start is ever sent, in several writes.
    let mut tcp = open(d.addr);
    tcp.write_all(&client_frame(false, TEXT, b"price: \xe2\x82"))
        .unwrap();
    let mut second = b"\x41".to_vec(); // not a continuation byte
    second.resize(1 << 20, b'b');
    let frame = client_frame(true, CONT, &second);
    for piece in frame[..14 + 3000].chunks(500) {
        tcp.write_all(piece).unwrap();
    }
    assert_eq!(expect_close(&mut tcp, &[]), 1007);
}

#[test]
fn valid_text_in_many_reads_is_echoed_whole() {
    let d = Daemon::start(&config("", ECHO));
    // The counterpart: the same shapes with valid UTF-8 are echoed, so
    // the tests above fail for the invalid bytes and nothing else.
    let mut tcp = open(d.addr);
    let text = "κόσμε €".repeat(20_000);
    let frame = client_frame(true, TEXT, text.as_bytes());
    for piece in frame.chunks(7001) {
        tcp.write_all(piece).unwrap();
    }
    let mut first = b"price: \xe2\x82".to_vec();
    tcp.write_all(&client_frame(false, TEXT, &first)).unwrap();
    tcp.write_all(&client_frame(true, CONT, b"\xac")).unwrap();
    let (op, payload) = next_frame(&mut tcp).expect("the echo");
    assert_eq!((op, payload.len()), (TEXT, text.len()));
    assert!(payload == text.as_bytes());
    first.push(0xac);
    let (op, payload) = next_frame(&mut tcp).expect("the second echo");
    assert_eq!((op, &payload[..]), (TEXT, &first[..]));
}
