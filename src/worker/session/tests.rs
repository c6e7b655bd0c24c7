//! The session's tests: over real loopback sockets, what it holds
//! between messages, what a send allocates, its size, the built-in echo.

use super::*;
use crate::handler::ConnId;
use crate::worker::stream::Transport;
use std::io::Write;

/// A session over a real loopback socket, and the client's end.
fn session() -> (Session, std::net::TcpStream) {
    session_of(None, false)
}

/// A session with `deflate` negotiated (or not), and the client's end.
fn session_with(deflate: Option<ConnDeflate>) -> (Session, std::net::TcpStream) {
    session_of(deflate, false)
}

/// The same, on a route of the built-in `echo` if `echo`.
fn session_of(deflate: Option<ConnDeflate>, echo: bool) -> (Session, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let stream = Stream::new(Transport::Plain(crate::worker::socket::Socket::new(
        mio::net::TcpStream::from_std(server),
    )));
    let request = crate::handler::InfoRequest {
        route: "/",
        path: "/",
        query: "",
        params: &[],
        headers: std::iter::empty(),
    };
    let info = ConnInfo::new(ConnId(1), peer, request, None, Default::default(), false);
    let up = Upgrade {
        info,
        route: 0,
        leftover: Vec::new(),
        counted: None,
        max_message_size: 16 << 20,
        deflate,
        echo,
    };
    (Session::new(stream, up, 16 << 20, Instant::now()), client)
}

/// A masked binary frame as a client sends it.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    masked(0x82, payload)
}

/// A masked final frame of `first_byte`'s opcode (64-bit length).
fn masked(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut out = vec![first_byte, 0x80 | 127];
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

#[test]
fn a_connection_that_received_a_large_message_holds_no_buffer_afterwards() {
    let (mut s, mut client) = session();
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    let bytes = client_frame(&payload);
    // The first 100 KB: the message is unfinished, its bytes held.
    client.write_all(&bytes[..100_000]).unwrap();
    let mut batch = Batch::default();
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while s.buffered() < 100_000 - 14 {
        assert!(Instant::now() < deadline, "the first bytes did not arrive");
        read_once(&mut s, &mut batch);
        std::thread::yield_now();
    }
    assert!(batch.received.is_empty());
    let rest = bytes[100_000..].to_vec();
    let writer = std::thread::spawn(move || {
        client.write_all(&rest).unwrap();
        client
    });
    while batch.received.is_empty() {
        assert!(Instant::now() < deadline, "the message did not arrive");
        read_once(&mut s, &mut batch);
        std::thread::yield_now();
    }
    let _client = writer.join().unwrap();
    assert_eq!(
        batch.received,
        vec![Received::Message(Message::binary(payload))]
    );
    assert_eq!(s.buffered(), 0, "nothing is held between messages");
    // Echo it: the output queue is released once the socket took it
    // (the client does not read here, so some of it may stay queued).
    let Some(Received::Message(message)) = batch.received.pop_back() else {
        panic!("not a message");
    };
    assert!(matches!(s.send(message, 16 << 20), Sent::Queued { .. }));
    if let Flush::Done { .. } = s.flush() {
        assert_eq!(s.buffered(), 0);
    }
}

/// Deterministic JSON-like text of about `n` bytes (the deflate
/// tests' generator).
fn json_like(n: usize) -> String {
    String::from_utf8(crate::deflate::tests::json_like(n)).expect("ASCII")
}

#[test]
fn a_compressed_send_allocates_nothing_once_warm_and_keeps_no_buffer() {
    use crate::deflate::{self, ConnDeflate, InflaterPool, Settings};
    use crate::test_alloc;
    let settings = Settings::default();
    let offer = "permessage-deflate; client_max_window_bits";
    let accepted = deflate::accept_offer([offer], &settings).expect("accepted");
    let server = ConnDeflate::new(accepted.params, deflate::Role::Server, &settings);
    let (mut s, mut client) = session_with(Some(server));
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut all).expect("read");
        all
    });
    // Compresses to more than the stream's gathering threshold, so
    // the frame goes to the socket straight from the worker's buffer
    // (a smaller one is copied into the stream's per-turn output
    // buffer, like any small frame).
    let text = json_like(64 << 10);
    let message = Message::text(text.clone());
    let mut allocations = Vec::new();
    for _ in 0..3 {
        let m = message.clone();
        let before = test_alloc::allocations();
        assert!(matches!(
            s.send(m, 16 << 20),
            Sent::Queued {
                compressed: Some(_)
            }
        ));
        allocations.push(test_alloc::allocations() - before);
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while !matches!(s.flush(), Flush::Done { .. }) {
            assert!(Instant::now() < deadline, "the client does not read");
            std::thread::yield_now();
        }
        assert_eq!(s.buffered(), 0, "nothing held between messages");
    }
    // The first send makes the worker's shared compressor and grows its
    // output buffer; the next ones reuse both.
    assert_eq!(
        allocations[1..],
        [0, 0],
        "allocations per send: {allocations:?}"
    );
    drop(s);
    // What the client got: three compressed messages that inflate back.
    let mut bytes = reader.join().expect("reader");
    let limits = frame::Limits {
        max_frame_size: None,
        max_message_size: None,
    };
    let mut frames = FrameReader::new(Role::Client, limits);
    frames.set_allow_rsv1(true);
    let mut client_side = ConnDeflate::new(accepted.params, deflate::Role::Client, &settings);
    let mut pool = InflaterPool::default();
    let mut input = Input::new(&mut bytes);
    let mut got = 0;
    while let Some(event) = frames.next(&mut input).expect("valid frames") {
        let Event::Message {
            kind,
            compressed,
            payload,
        } = event
        else {
            continue;
        };
        assert!(compressed);
        let back =
            inflate_message(&mut client_side, kind, &payload, usize::MAX, &mut pool).unwrap();
        assert!(back == text.as_bytes());
        got += 1;
    }
    assert_eq!(got, 3);
}

/// Every open connection holds its `Session` (boxed) for its whole
/// life, so its inline size is most of an idle connection's memory
/// (docs/benchmarks.md, "Memory per idle connection": at most 1 KiB
/// in all at 10,000 connections). It was 560 bytes before the request
/// data, the unfinished message and the limits' count were made
/// compact or boxed. 392 since the broadcast turn's span (8 bytes)
/// joined it; 408 since its places in the broadcast sets (12 bytes,
/// `rooms.rs`) did. In this (debug) build mio's socket also carries a
/// selector id, 8 bytes that a release build does not have.
#[test]
fn an_open_session_stays_small() {
    let size = std::mem::size_of::<Session>();
    assert!(size <= 408, "Session is {size} bytes");
}

/// One read of the session, as after a readiness event; panics if the
/// connection closed or failed.
fn read_once(s: &mut Session, batch: &mut Batch) {
    thread_local! {
        // The worker's read buffer, made once as a worker makes it.
        static SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(scratch());
    }
    let mut budget = READ_BUDGET;
    s.stream_mut().arm(false);
    let read = SCRATCH
        .with_borrow_mut(|scratch| s.read(scratch, &mut budget, Instant::now(), 16 << 20, batch));
    match read {
        Read::More | Read::Stop { .. } => {}
        Read::Closed => panic!("closed"),
        Read::Failed(e) => panic!("failed: {e}"),
    }
}

#[test]
fn the_builtin_echo_answers_from_the_read_buffer_in_order() {
    let (mut s, mut client) = session_of(None, true);
    let big: Vec<u8> = (0..20_000).map(|i| (i % 251) as u8).collect();
    let mut input = masked(0x81, b"hello");
    input.extend(masked(0x89, b"p"));
    input.extend(masked(0x82, &big));
    client.write_all(&input).unwrap();
    let mut batch = Batch::default();
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while batch.echoed.messages < 2 {
        assert!(Instant::now() < deadline, "the frames did not arrive");
        read_once(&mut s, &mut batch);
        std::thread::yield_now();
    }
    // Sent back while reading: the handler only sees the ping.
    assert_eq!(
        batch.received,
        vec![Received::Ping(Bytes::from_static(b"p"))]
    );
    assert_eq!(
        batch.echoed,
        Echoed {
            messages: 2,
            bytes: 5 + big.len() as u64
        }
    );
    assert!(matches!(s.flush(), Flush::Done { .. }));
    let mut expected = vec![0x81, 5];
    expected.extend_from_slice(b"hello");
    expected.extend_from_slice(&[0x8a, 1, b'p', 0x82, 126]);
    expected.extend_from_slice(&(big.len() as u16).to_be_bytes());
    expected.extend_from_slice(&big);
    let mut got = vec![0u8; expected.len()];
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    std::io::Read::read_exact(&mut client, &mut got).unwrap();
    assert_eq!(got, expected, "echoes and the pong, in order");
    assert_eq!(s.buffered(), 0, "nothing is held between messages");
}

#[test]
fn an_echoed_small_message_allocates_nothing_once_warm() {
    use crate::test_alloc;
    let (mut s, mut client) = session_of(None, true);
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let text = [b'x'; 64];
    let mut batch = Batch::default();
    let mut allocations = Vec::new();
    for _ in 0..4 {
        client.write_all(&masked(0x81, &text)).unwrap();
        let before = test_alloc::allocations();
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while batch.echoed.messages == 0 {
            assert!(Instant::now() < deadline, "the frame did not arrive");
            read_once(&mut s, &mut batch);
        }
        assert!(matches!(s.flush(), Flush::Done { .. }));
        allocations.push(test_alloc::allocations() - before);
        assert!(batch.received.is_empty(), "{batch:?}");
        assert_eq!(
            std::mem::take(&mut batch.echoed),
            Echoed {
                messages: 1,
                bytes: 64
            }
        );
        assert_eq!(s.buffered(), 0, "nothing is held between messages");
        let mut echo = [0u8; 66];
        std::io::Read::read_exact(&mut client, &mut echo).unwrap();
        assert_eq!(echo[..2], [0x81, 64]);
        assert_eq!(echo[2..], text);
    }
    // The first message makes the worker's read buffer and its spare
    // output buffer; the next ones reuse both.
    assert_eq!(
        allocations[1..],
        [0, 0, 0],
        "allocations per echo: {allocations:?}"
    );
}
