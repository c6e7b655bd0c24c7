//! RFC 6455 regressions of the client library (`wssd::client`) against a
//! raw test server that writes frames with a tiny frame writer of its own:
//! fail-fast UTF-8, close codes when the server breaks the protocol,
//! control frames between fragments, frames split byte by byte.

use crate::support::frames::{server_frame as frame, FrameStream, CLOSE, CONT, PING, PONG, TEXT};
use crate::support::DEADLINE;
use std::io::Write;
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Instant;

use wssd::client::{Client, ClientConfig, ClientError, Message};

/// The server side of one connection.
struct Peer(FrameStream);

impl Peer {
    /// Accepts one connection and answers its upgrade request with a 101;
    /// `after_head` goes in the same write as the 101.
    fn accept(listener: &TcpListener, after_head: &[u8]) -> Peer {
        let (tcp, _) = listener.accept().expect("accept");
        let mut s = FrameStream::new(tcp);
        let head = s.read_head();
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_string())
            })
            .expect("Sec-WebSocket-Key");
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        out.extend_from_slice(after_head);
        s.send(&out);
        Peer(s)
    }

    /// The next (masked) client frame as `(opcode, payload)`, `None` at EOF.
    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        let frame = self.0.next()?;
        assert!(frame.masked, "client frames must be masked: {frame:?}");
        Some((frame.opcode, frame.payload))
    }

    /// Expects a close frame; returns its code, then expects the TCP end.
    fn expect_close(&mut self) -> Option<u16> {
        let (opcode, payload) = self.next().expect("a close frame, not EOF");
        assert_eq!(opcode, CLOSE, "expected a close frame: {payload:?}");
        let _ = self
            .0
            .tcp
            .write_all(&frame(true, CLOSE, &payload[..payload.len().min(2)]));
        // As a server should, end the TCP connection first.
        let _ = self.0.tcp.shutdown(std::net::Shutdown::Write);
        assert_eq!(self.next(), None, "the client must end the connection");
        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
    }
}

/// A listener on a free port and the server thread running `serve` on its
/// first connection.
fn server<T: Send + 'static>(
    serve: impl FnOnce(&TcpListener) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    (url, std::thread::spawn(move || serve(&listener)))
}

fn connect(url: &str) -> Client {
    Client::connect(url, &ClientConfig::default().with_timeout(DEADLINE)).expect("connect")
}

#[test]
fn invalid_utf8_inside_a_frame_fails_before_the_frame_ends_with_1007() {
    // The 101 and the start of a 1000-byte text frame with a surrogate in
    // it arrive in one TCP segment; the rest of the frame never comes.
    let (url, server) = server(|l| {
        let mut payload = b"hello ".to_vec();
        payload.extend_from_slice(b"\xed\xa0\x80");
        payload.resize(1000, b'a');
        let bytes = frame(true, TEXT, &payload);
        let mut peer = Peer::accept(l, &bytes[..4 + 20]);
        peer.expect_close()
    });
    let mut client = connect(&url);
    let start = Instant::now();
    match client.receive() {
        Err(ClientError::Protocol(why)) => assert!(why.contains("UTF-8"), "{why}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(start.elapsed() < DEADLINE);
    assert_eq!(server.join().unwrap(), Some(1007));
    assert!(client.is_closed());
}

#[test]
fn invalid_utf8_in_a_later_fragment_is_1007() {
    let (url, server) = server(|l| {
        let mut bytes = frame(true, TEXT, b"first");
        bytes.extend(frame(false, TEXT, "κόσμε".as_bytes()));
        bytes.extend(frame(false, CONT, b"\xf4\x90\x80\x80"));
        let mut peer = Peer::accept(l, &bytes);
        peer.expect_close()
    });
    let mut client = connect(&url);
    assert_eq!(client.receive().unwrap(), Message::text("first"));
    assert!(matches!(client.receive(), Err(ClientError::Protocol(_))));
    assert_eq!(server.join().unwrap(), Some(1007));
}

#[test]
fn protocol_errors_are_answered_with_1002_after_earlier_messages() {
    let mut rsv = frame(true, TEXT, b"rsv");
    rsv[0] |= 0x20;
    let mut masked = frame(true, TEXT, b"");
    masked[1] |= 0x80;
    masked.extend_from_slice(&[1, 2, 3, 4]);
    let bad: Vec<(&'static str, Vec<u8>)> = vec![
        ("reserved opcode 4", frame(true, 0x4, b"")),
        ("RSV2 set", rsv),
        ("masked server frame", masked),
        ("fragmented ping", frame(false, PING, b"")),
        ("lone continuation", frame(true, CONT, b"x")),
    ];
    for (what, bad) in bad {
        let (url, server) = server(move |l| {
            let mut bytes = frame(true, TEXT, b"before");
            bytes.extend(bad);
            let mut peer = Peer::accept(l, &bytes);
            peer.expect_close()
        });
        let mut client = connect(&url);
        assert_eq!(client.receive().unwrap(), Message::text("before"));
        match client.receive() {
            Err(ClientError::Protocol(_)) => {}
            other => panic!("{what}: expected a protocol error, got {other:?}"),
        }
        assert_eq!(server.join().unwrap(), Some(1002), "{what}");
    }
}

#[test]
fn pings_between_fragments_written_byte_by_byte() {
    let text = "κόσμε ✓";
    let (url, server) = server(move |l| {
        let bytes = text.as_bytes();
        let mut wire = frame(false, TEXT, &bytes[..1]);
        wire.extend(frame(true, PING, b"p1"));
        wire.extend(frame(true, CONT, &bytes[1..]));
        let mut peer = Peer::accept(l, &[]);
        for b in &wire {
            peer.0.tcp.write_all(std::slice::from_ref(b)).unwrap();
        }
        let pong = peer.next();
        let echo = peer.next();
        let code = peer.expect_close();
        (pong, echo, code)
    });
    let mut client = connect(&url);
    let got = client.receive().unwrap();
    assert_eq!(got, Message::text(text));
    client.send(got).unwrap();
    client.close(1000, "").unwrap();
    let (pong, echo, code) = server.join().unwrap();
    assert_eq!(pong, Some((PONG, b"p1".to_vec())));
    assert_eq!(echo, Some((TEXT, text.as_bytes().to_vec())));
    assert_eq!(code, Some(1000));
}
