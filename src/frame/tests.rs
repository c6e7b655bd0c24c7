//! Tests of the reader and writer together, over whole byte streams cut
//! at every position.

use super::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An independent encoder: one frame, any bits, any length form.
fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame from a client: FIN flag and opcode.
fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame((u8::from(fin) << 7) | opcode, payload, Some(KEY))
}

/// What an event carried, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Msg(MessageKind, bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Err(FrameError),
}

fn own(event: Event<'_>) -> Got {
    match event {
        Event::Message {
            kind,
            compressed,
            payload,
        } => Got::Msg(kind, compressed, payload.into_vec()),
        Event::Ping(p) => Got::Ping(p.into_vec()),
        Event::Pong(p) => Got::Pong(p.into_vec()),
        Event::Close(c) => Got::Close(c.map(|c| (u16::from(c.code), c.reason.to_string()))),
    }
}

/// Feeds `pieces` as successive reads; everything the reader reported,
/// stopping at the first error.
fn run<'a>(reader: &mut FrameReader, pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Got> {
    let mut got = Vec::new();
    for piece in pieces {
        let mut buf = piece.to_vec();
        let mut input = Input::new(&mut buf);
        loop {
            match reader.next(&mut input) {
                Ok(Some(event)) => got.push(own(event)),
                Ok(None) => break,
                Err(e) => {
                    got.push(Got::Err(e));
                    return got;
                }
            }
        }
        assert!(input.is_empty(), "a read was not consumed");
    }
    got
}

fn server() -> FrameReader {
    FrameReader::new(Role::Server, Limits::default())
}

fn text(s: &str) -> Got {
    Got::Msg(MessageKind::Text, false, s.as_bytes().to_vec())
}

/// A stream with every kind of frame and every length form.
fn mixed_stream() -> (Vec<u8>, Vec<Got>) {
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    bytes.extend(client(true, 1, "héllo".as_bytes()));
    want.push(text("héllo"));
    bytes.extend(client(false, 1, "κό".as_bytes()));
    bytes.extend(client(true, 9, b"\xff\xfe")); // ping between fragments
    want.push(Got::Ping(b"\xff\xfe".to_vec()));
    bytes.extend(client(false, 0, &"σμε".as_bytes()[..3])); // a character cut
    bytes.extend(client(true, 0, &"σμε".as_bytes()[3..]));
    want.push(text("κόσμε"));
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    bytes.extend(client(true, 2, &big));
    want.push(Got::Msg(MessageKind::Binary, false, big));
    bytes.extend(client(true, 1, &[b'x'; 300]));
    want.push(text(&"x".repeat(300)));
    bytes.extend(client(true, 1, b""));
    want.push(text(""));
    bytes.extend(client(true, 10, b"pong"));
    want.push(Got::Pong(b"pong".to_vec()));
    bytes.extend(client(true, 8, b"\x03\xe8bye"));
    want.push(Got::Close(Some((1000, "bye".into()))));
    (bytes, want)
}

#[test]
fn one_read_and_a_split_at_every_byte_give_the_same_events() {
    let (bytes, want) = mixed_stream();
    assert_eq!(run(&mut server(), [&bytes[..]]), want);
    // Every byte, except deep inside the 70,000-byte payload (every 997th
    // there), to keep the test quick in debug builds.
    let big = bytes
        .windows(3)
        .position(|w| w == [0x82, 0xff, 0])
        .expect("big frame");
    let cuts = (0..=bytes.len())
        .filter(|&c| c < big + 100 || c > big + 69_900 || c % 997 == 0)
        .collect::<Vec<_>>();
    for cut in cuts {
        let mut reader = server();
        let got = run(&mut reader, [&bytes[..cut], &bytes[cut..]]);
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(reader.buffered_capacity(), 0, "cut at {cut}");
    }
}

#[test]
fn small_reads_give_the_same_events() {
    let (bytes, want) = mixed_stream();
    for step in [1, 2, 3, 5, 7, 13, 4096] {
        let mut reader = server();
        assert_eq!(run(&mut reader, bytes.chunks(step)), want, "step {step}");
    }
}

#[test]
fn a_message_whole_in_one_read_is_borrowed_and_unmasked_in_place() {
    let mut reader = server();
    let mut buf = client(true, 1, b"hello");
    buf.extend(client(true, 2, b"\x00\x01"));
    let mut input = Input::new(&mut buf);
    for want in [&b"hello"[..], b"\x00\x01"] {
        match reader.next(&mut input) {
            Ok(Some(Event::Message { payload, .. })) => {
                assert!(payload.is_borrowed());
                assert_eq!(&payload[..], want);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reader.next(&mut input), Ok(None));
    // The payload was unmasked where it lay.
    assert_eq!(&buf[6..11], b"hello");
}

#[test]
fn a_cut_message_is_copied_once_into_a_buffer_reserved_for_it() {
    let mut reader = server();
    let payload = vec![b'a'; 10_000];
    let bytes = client(true, 1, &payload);
    let mut first = bytes[..5000].to_vec();
    let mut input = Input::new(&mut first);
    assert_eq!(reader.next(&mut input), Ok(None));
    // Reserved for the whole frame at once: no reallocation, no memmove.
    assert_eq!(reader.buffered_capacity(), 10_000);
    let mut rest = bytes[5000..].to_vec();
    let mut input = Input::new(&mut rest);
    match reader.next(&mut input) {
        Ok(Some(Event::Message { payload: got, .. })) => {
            assert!(!got.is_borrowed());
            assert_eq!(got.as_bytes(), &payload[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.buffered_capacity(), 0);
}

#[test]
fn a_one_mib_message_leaves_no_read_buffer_behind() {
    let mut reader = server();
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| b'a' + (i % 26) as u8).collect();
    let bytes = client(true, 1, &payload);
    let mut got = None;
    let mut held = 0;
    for piece in bytes.chunks(64 * 1024) {
        let mut buf = piece.to_vec();
        let mut input = Input::new(&mut buf);
        while let Some(event) = reader.next(&mut input).expect("valid") {
            got = Some(own(event));
        }
        held = held.max(reader.buffered_capacity());
    }
    assert_eq!(got, Some(Got::Msg(MessageKind::Text, false, payload)));
    assert!(held >= 1 << 20, "the message was assembled ({held})");
    assert_eq!(reader.buffered_capacity(), 0);
    assert!(reader.is_idle());
    // Also when fragmented into many frames.
    let mut bytes = Vec::new();
    for (i, part) in vec![b'z'; 1 << 20].chunks(1000).enumerate() {
        bytes.extend(client(part.len() < 1000, if i == 0 { 2 } else { 0 }, part));
    }
    let got = run(&mut reader, bytes.chunks(65536));
    assert_eq!(got.len(), 1);
    assert_eq!(reader.buffered_capacity(), 0);
}

#[test]
fn invalid_utf8_in_the_first_read_fails_before_the_rest_arrives() {
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend_from_slice(b"\xf4\x90\x80\x80"); // above U+10FFFF
    payload.extend_from_slice(&[b'a'; 100_000]);
    let bytes = client(true, 1, &payload);
    let mut reader = server();
    // Header (14 bytes) and the first 20 payload bytes only.
    let got = run(&mut reader, [&bytes[..34]]);
    assert_eq!(got, vec![Got::Err(FrameError::InvalidUtf8)]);
    assert_eq!(FrameError::InvalidUtf8.close_code(), CloseCode::Invalid);
    // Split across many small frames of a fragmented message: the first
    // fragment with the bad byte fails, long before the last.
    let mut reader = server();
    let mut bytes = client(false, 1, b"ok \xc0\xaf");
    for _ in 0..100 {
        bytes.extend(client(false, 0, b"more"));
    }
    let got = run(&mut reader, bytes.chunks(3).take(5));
    assert_eq!(got, vec![Got::Err(FrameError::InvalidUtf8)]);
    // A valid character cut between reads is fine; a message ending
    // inside one is not.
    let e = "€".as_bytes();
    let mut cut = client(false, 1, &e[..1]);
    cut.extend(client(true, 0, &e[1..2]));
    assert_eq!(
        run(&mut server(), [&cut[..]]),
        vec![Got::Err(FrameError::InvalidUtf8)]
    );
    // And the failure sticks.
    assert_eq!(
        run(&mut reader, [&client(true, 1, b"x")[..]]),
        vec![Got::Err(FrameError::InvalidUtf8)]
    );
}

#[test]
fn rsv1_is_refused_until_allowed_then_passed_up() {
    let mut bytes = client(true, 1, b"\xff\x00 compressed");
    bytes[0] |= 0x40;
    let got = run(&mut server(), [&bytes[..]]);
    assert_eq!(got, vec![Got::Err(FrameError::ReservedBits)]);
    assert_eq!(FrameError::ReservedBits.close_code(), CloseCode::Protocol);
    let mut reader = server();
    reader.set_allow_rsv1(true);
    // Not UTF-8-checked: the extension checks the inflated text.
    assert_eq!(
        run(&mut reader, [&bytes[..]]),
        vec![Got::Msg(
            MessageKind::Text,
            true,
            b"\xff\x00 compressed".to_vec()
        )]
    );
    // Never on a continuation or a control frame, even when allowed.
    let mut first = client(false, 2, b"a");
    first[0] |= 0x40;
    let mut cont = client(true, 0, b"b");
    cont[0] |= 0x40;
    let mut reader = server();
    reader.set_allow_rsv1(true);
    assert_eq!(
        run(&mut reader, [&first[..], &cont[..]]),
        vec![Got::Err(FrameError::ReservedBits)]
    );
    let mut ping = client(true, 9, b"");
    ping[0] |= 0x40;
    let mut reader = server();
    reader.set_allow_rsv1(true);
    assert_eq!(
        run(&mut reader, [&ping[..]]),
        vec![Got::Err(FrameError::ReservedBits)]
    );
    for bit in [0x20, 0x10] {
        let mut bytes = client(true, 1, b"x");
        bytes[0] |= bit;
        assert_eq!(
            run(&mut reader_allowing_rsv1(), [&bytes[..]]),
            vec![Got::Err(FrameError::ReservedBits)]
        );
    }
}

fn reader_allowing_rsv1() -> FrameReader {
    let mut reader = server();
    reader.set_allow_rsv1(true);
    reader
}

#[test]
fn sizes_are_refused_with_1009_as_soon_as_a_header_announces_too_much() {
    let limits = Limits {
        max_frame_size: Some(100),
        max_message_size: Some(250),
    };
    // A frame over the frame limit: only its header has arrived.
    let bytes = client(true, 2, &[0; 101]);
    let mut reader = FrameReader::new(Role::Server, limits);
    let got = run(&mut reader, [&bytes[..8]]);
    let err = FrameError::FrameTooLarge {
        size: 101,
        max: 100,
    };
    assert_eq!(got, vec![Got::Err(err.clone())]);
    assert_eq!(err.close_code(), CloseCode::Size);
    // A message over the message limit in fragments: at the third header.
    let mut bytes = client(false, 1, &[b'a'; 100]);
    bytes.extend(client(false, 0, &[b'a'; 100]));
    let third = bytes.len();
    bytes.extend(client(true, 0, &[b'a'; 51]));
    let mut reader = FrameReader::new(Role::Server, limits);
    let got = run(&mut reader, [&bytes[..third + 8]]);
    assert_eq!(
        got,
        vec![Got::Err(FrameError::MessageTooLarge {
            size: 251,
            max: 250
        })]
    );
    // Exactly at the limits is fine.
    let mut bytes = client(false, 1, &[b'a'; 100]);
    bytes.extend(client(false, 0, &[b'a'; 100]));
    bytes.extend(client(true, 0, &[b'a'; 50]));
    let mut reader = FrameReader::new(Role::Server, limits);
    assert_eq!(run(&mut reader, [&bytes[..]]), vec![text(&"a".repeat(250))]);
    // A 64-bit length of 2^63 - 1 with the default limits: 1009 at once,
    // without allocating anything.
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    header.extend_from_slice(&KEY);
    let mut reader = FrameReader::new(
        Role::Server,
        Limits {
            max_frame_size: Some(16 << 20),
            max_message_size: Some(64 << 20),
        },
    );
    let got = run(&mut reader, [&header[..]]);
    assert!(matches!(
        got[..],
        [Got::Err(FrameError::FrameTooLarge { .. })]
    ));
    // With no limit, a length with its top bit set is a protocol error.
    header[2] = 0x80;
    assert_eq!(
        run(&mut server(), [&header[..]]),
        vec![Got::Err(FrameError::LengthOverflow)]
    );
}

#[test]
fn control_frame_rules() {
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (client(true, 9, &[0; 126]), FrameError::ControlTooLong(126)),
        (client(false, 9, b"x"), FrameError::FragmentedControl),
        (client(true, 0, b"x"), FrameError::UnexpectedContinuation),
        (
            [client(false, 1, b"a"), client(true, 1, b"b")].concat(),
            FrameError::ExpectedContinuation,
        ),
        (client(true, 3, b""), FrameError::UnknownOpcode(3)),
        (client(true, 11, b""), FrameError::UnknownOpcode(11)),
        (frame(0x81, b"x", None), FrameError::Unmasked),
    ];
    for (bytes, err) in cases {
        assert_eq!(err.close_code(), CloseCode::Protocol);
        for step in [1, bytes.len()] {
            let got = run(&mut server(), bytes.chunks(step));
            assert_eq!(got.last(), Some(&Got::Err(err.clone())), "{err}");
        }
    }
    // Control frames between fragments are delivered in order.
    let mut bytes = client(false, 2, b"ab");
    bytes.extend(client(true, 9, b"p"));
    bytes.extend(client(true, 10, b"q"));
    bytes.extend(client(true, 0, b"cd"));
    assert_eq!(
        run(&mut server(), [&bytes[..]]),
        vec![
            Got::Ping(b"p".to_vec()),
            Got::Pong(b"q".to_vec()),
            Got::Msg(MessageKind::Binary, false, b"abcd".to_vec())
        ]
    );
    // A 125-byte ping cut in the middle.
    let ping = client(true, 9, &[7; 125]);
    for cut in 0..ping.len() {
        assert_eq!(
            run(&mut server(), [&ping[..cut], &ping[cut..]]),
            vec![Got::Ping(vec![7; 125])]
        );
    }
}

#[test]
fn close_frames_are_validated_and_end_the_input() {
    let close = |payload: &[u8]| run(&mut server(), [&client(true, 8, payload)[..]]);
    assert_eq!(close(b""), vec![Got::Close(None)]);
    assert_eq!(
        close(b"\x03\xe8"),
        vec![Got::Close(Some((1000, String::new())))]
    );
    assert_eq!(
        close(b"\x0f\xa0ok"),
        vec![Got::Close(Some((4000, "ok".into())))]
    );
    assert_eq!(close(b"\x03"), vec![Got::Err(FrameError::CloseTooShort)]);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_eq!(
            close(&code.to_be_bytes()),
            vec![Got::Err(FrameError::InvalidCloseCode(code))]
        );
        assert_eq!(
            FrameError::InvalidCloseCode(code).close_code(),
            CloseCode::Protocol
        );
    }
    let err = close(b"\x03\xe8\xce\xba\xff");
    assert_eq!(err, vec![Got::Err(FrameError::InvalidCloseReason)]);
    assert_eq!(
        FrameError::InvalidCloseReason.close_code(),
        CloseCode::Invalid
    );
    // Nothing after a close frame is looked at.
    let mut bytes = client(true, 8, b"");
    bytes.extend(client(true, 1, b"\xff"));
    bytes.extend_from_slice(b"garbage");
    let mut reader = server();
    assert_eq!(run(&mut reader, [&bytes[..]]), vec![Got::Close(None)]);
    assert!(reader.is_closed());
}

#[test]
fn roles_decide_masking() {
    let mut client_reader = FrameReader::new(Role::Client, Limits::default());
    assert_eq!(
        run(&mut client_reader, [&client(true, 1, b"x")[..]]),
        vec![Got::Err(FrameError::Masked)]
    );
    let mut client_reader = FrameReader::new(Role::Client, Limits::default());
    assert_eq!(
        run(&mut client_reader, [&frame(0x81, b"x", None)[..]]),
        vec![text("x")]
    );
}

#[test]
fn writer_frames_read_back_in_the_other_role() {
    for (role, peer) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
        let writer = FrameWriter::new(role);
        let mut out = Vec::new();
        let big = vec![b'q'; 70_000];
        writer.append(&mut out, OpCode::Data(Data::Text), true, "héllo".as_bytes());
        writer.append(&mut out, OpCode::Data(Data::Binary), false, b"ab");
        writer.append(&mut out, OpCode::Control(Control::Ping), true, b"p");
        writer.append(&mut out, OpCode::Data(Data::Continue), true, b"cd");
        writer.append(&mut out, OpCode::Data(Data::Text), true, &big);
        writer.append_close(&mut out, Some((CloseCode::Away, &"é".repeat(100))));
        let masked = out[1] & 0x80 != 0;
        assert_eq!(masked, role == Role::Client);
        let mut reader = FrameReader::new(peer, Limits::default());
        let got = run(&mut reader, out.chunks(1000));
        assert_eq!(
            got,
            vec![
                text("héllo"),
                Got::Ping(b"p".to_vec()),
                Got::Msg(MessageKind::Binary, false, b"abcd".to_vec()),
                Got::Msg(MessageKind::Text, false, big),
                Got::Close(Some((1001, "é".repeat(61)))),
            ]
        );
    }
}

#[test]
fn client_masks_differ_per_frame() {
    let writer = FrameWriter::new(Role::Client);
    let a = writer.header(OpCode::Data(Data::Text), true, false, 10);
    let b = writer.header(OpCode::Data(Data::Text), true, false, 10);
    let c = writer.header(OpCode::Data(Data::Text), true, false, 10);
    assert!(a.mask().is_some());
    assert!(a.mask() != b.mask() || b.mask() != c.mask());
    let server = FrameWriter::new(Role::Server);
    assert_eq!(
        server
            .header(OpCode::Data(Data::Text), true, false, 10)
            .mask(),
        None
    );
}

/// A socket that takes at most `take` bytes per call, then blocks.
struct Trickle {
    out: Vec<u8>,
    take: usize,
    calls_left: usize,
}

impl std::io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.calls_left == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        self.calls_left -= 1;
        let n = buf.len().min(self.take);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_frame_sends_header_and_payload_and_reports_partial_writes() {
    let payload = vec![b'z'; 20_000];
    let header = FrameWriter::new(Role::Server).header(
        OpCode::Data(Data::Binary),
        true,
        false,
        payload.len(),
    );
    let mut sock = Trickle {
        out: Vec::new(),
        take: 7000,
        calls_left: 2,
    };
    let n = write_frame(&mut sock, header.as_bytes(), &payload).expect("partial");
    // (`Write`'s default `write_vectored` takes the first slice only.)
    assert!(n > 7000 && n <= 14_000, "{n}");
    sock.calls_left = 100;
    let mut rest = Vec::new();
    rest.extend_from_slice(header.as_bytes());
    rest.extend_from_slice(&payload);
    sock.out.extend_from_slice(&rest[n..]);
    let mut reader = FrameReader::new(Role::Client, Limits::default());
    assert_eq!(
        run(&mut reader, [&sock.out[..]]),
        vec![Got::Msg(MessageKind::Binary, false, payload)]
    );
    let mut blocked = Trickle {
        out: Vec::new(),
        take: 1,
        calls_left: 0,
    };
    let err = write_frame(&mut blocked, header.as_bytes(), b"x").expect_err("blocked");
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
}
