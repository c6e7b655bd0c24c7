//! Raw-frame tests of compressed messages as the worker's session and
//! the client read them: frames built by hand, fed in reads of every
//! size through the real frame reader (which joins the frames and checks
//! RSV1), each compressed message inflated by [`inflate_message`].

use super::message::{inflate_message, MessageError};
use super::negotiate::Role as Side;
use super::*;
use crate::frame::{
    apply_mask, CloseCode, EncodedHeader, Event, FrameReader, Input, Limits, MessageKind, Role,
};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A frame as a client sends it (masked).
fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let h = EncodedHeader::new(fin, rsv1, opcode, Some(KEY), payload.len() as u64);
    let mut v = h.as_bytes().to_vec();
    let start = v.len();
    v.extend_from_slice(payload);
    apply_mask(&mut v[start..], KEY, 0);
    v
}

fn limits(max_message: usize) -> Limits {
    Limits {
        max_frame_size: Some(64 << 20),
        max_message_size: Some(max_message),
    }
}

/// Both ends of a connection that negotiated `offer` against `settings`.
fn pair(settings: Settings, offer: ClientOffer) -> (ConnDeflate, ConnDeflate) {
    let a = accept_offer([offer.header_value().as_str()], &settings).unwrap();
    let n = offer.check_answer([a.response.as_str()]).unwrap().unwrap();
    (
        ConnDeflate::new(a.params, Side::Server, &settings),
        ConnDeflate::new(n, Side::Client, &Settings::default()),
    )
}

/// The server side of a connection, read as the worker's session reads
/// it: the frame reader (RSV1 allowed since the extension was
/// negotiated) and the connection's deflate state.
struct Server {
    reader: FrameReader,
    deflate: ConnDeflate,
    max_message: usize,
}

fn server(deflate: ConnDeflate, max_message: usize) -> Server {
    let mut reader = FrameReader::new(Role::Server, limits(max_message));
    reader.set_allow_rsv1(true);
    Server {
        reader,
        deflate,
        max_message,
    }
}

type Got = Vec<(MessageKind, bool, Vec<u8>)>;

/// Feeds `bytes` to `conn` in reads of `read_size` bytes; the data
/// messages received (inflated when RSV1 was set), or the first error.
fn feed(
    conn: &mut Server,
    pool: &mut InflaterPool,
    bytes: &[u8],
    read_size: usize,
) -> Result<Got, MessageError> {
    let mut got = Vec::new();
    for chunk in bytes.chunks(read_size.max(1)) {
        let mut scratch = chunk.to_vec();
        let mut input = Input::new(&mut scratch);
        while let Some(event) = conn.reader.next(&mut input)? {
            let Event::Message {
                kind,
                compressed,
                payload,
            } = event
            else {
                continue;
            };
            let bytes = if compressed {
                inflate_message(&mut conn.deflate, kind, &payload, conn.max_message, pool)?
            } else {
                payload.into_vec()
            };
            got.push((kind, compressed, bytes));
        }
    }
    Ok(got)
}

fn compress(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    SharedCompressor::new(Settings::default().tuning())
        .compress(15, m, &mut out)
        .unwrap();
    out
}

fn text(n: usize) -> Vec<u8> {
    let mut s = Vec::new();
    while s.len() < n {
        s.extend_from_slice(
            format!("{{\"seq\":{},\"msg\":\"héllo wörld\"}},", s.len() % 977).as_bytes(),
        );
    }
    s.truncate(n - n.min(4));
    s.extend_from_slice(&b"done"[..n.min(4)]);
    s
}

fn code(r: Result<Got, MessageError>) -> CloseCode {
    r.expect_err("the connection must fail").close_code()
}

fn negotiated(settings: Settings) -> Server {
    let (s, _) = pair(settings, ClientOffer::default());
    server(s, 1 << 20)
}

/// The server inflating with the worker's pool (zlib-rs) and, with the
/// client's context kept, with the connection's own inflater (C zlib):
/// the failures must be the same on both.
fn both_inflaters() -> [Settings; 2] {
    [
        Settings::default(),
        Settings {
            client_context_takeover: true,
            ..Settings::default()
        },
    ]
}

#[test]
fn a_fragmented_compressed_message_inflates_across_frames_and_reads() {
    let m = text(50_000);
    let c = compress(&m);
    let third = c.len() / 3;
    // RSV1 on the first frame only (RFC 7692 §6.1).
    let mut bytes = client_frame(false, true, 1, &c[..third]);
    bytes.extend(client_frame(false, false, 0, &c[third..2 * third]));
    bytes.extend(client_frame(true, false, 0, &c[2 * third..]));
    // An uncompressed message after it on the same connection.
    bytes.extend(client_frame(true, false, 2, b"\x00\x01plain"));
    for read_size in [1, 5, 64, 1500, bytes.len()] {
        let mut conn = negotiated(Settings::default());
        let mut pool = InflaterPool::default();
        let got = feed(&mut conn, &mut pool, &bytes, read_size).unwrap();
        assert_eq!(got.len(), 2, "reads of {read_size}");
        assert!(
            got[0] == (MessageKind::Text, true, m.clone()),
            "reads of {read_size}"
        );
        assert_eq!(
            got[1],
            (MessageKind::Binary, false, b"\x00\x01plain".to_vec())
        );
        assert!(
            !conn.deflate.holds_state(),
            "nothing kept after the messages"
        );
        assert_eq!(conn.reader.buffered_capacity(), 0);
    }
}

#[test]
fn inflated_text_that_is_not_utf8_fails_with_1007_before_the_limit() {
    // The invalid byte comes first; the rest would pass the limit: the
    // text check stops inflation first.
    let mut m = vec![0xff];
    m.extend(std::iter::repeat_n(b'a', 4 << 20));
    let frame = client_frame(true, true, 1, &compress(&m));
    for settings in both_inflaters() {
        let mut conn = negotiated(settings);
        let err = feed(&mut conn, &mut InflaterPool::default(), &frame, 1 << 20).unwrap_err();
        assert_eq!(err, MessageError::InvalidUtf8);
        assert_eq!(err.close_code(), CloseCode::Invalid);
    }
    // A character cut at the end of the message is invalid too.
    let frame = client_frame(true, true, 1, &compress("né".as_bytes()[..2].as_ref()));
    for settings in both_inflaters() {
        let mut conn = negotiated(settings);
        assert_eq!(
            code(feed(&mut conn, &mut InflaterPool::default(), &frame, 100)),
            CloseCode::Invalid
        );
    }
}

#[test]
fn a_message_inflating_past_the_limit_is_1009() {
    let frame = client_frame(true, true, 2, &compress(&vec![0u8; 8 << 20]));
    for settings in both_inflaters() {
        let mut conn = negotiated(settings);
        let mut pool = InflaterPool::default();
        assert_eq!(
            code(feed(&mut conn, &mut pool, &frame, 64 << 10)),
            CloseCode::Size
        );
    }
}

#[test]
fn undecodable_data_is_1007_for_text_and_1002_for_binary() {
    for (opcode, expected) in [(1, CloseCode::Invalid), (2, CloseCode::Protocol)] {
        let frame = client_frame(true, true, opcode, &[0xff, 0xff, 0xff, 0x00]);
        for settings in both_inflaters() {
            let mut conn = negotiated(settings);
            assert_eq!(
                code(feed(&mut conn, &mut InflaterPool::default(), &frame, 100)),
                expected
            );
        }
    }
}

#[test]
fn an_empty_compressed_message_is_accepted() {
    let mut conn = negotiated(Settings::default());
    for payload in [&[0x00][..], &[]] {
        let frame = client_frame(true, true, 1, payload);
        let got = feed(&mut conn, &mut InflaterPool::default(), &frame, 100).unwrap();
        assert_eq!(got, vec![(MessageKind::Text, true, Vec::new())]);
    }
}

#[test]
fn a_client_keeping_its_context_is_read_message_after_message() {
    let settings = Settings {
        client_context_takeover: true,
        ..Settings::default()
    };
    let (s, mut c) = pair(settings, ClientOffer::default());
    let mut conn = server(s, 1 << 20);
    let mut shared = SharedCompressor::new(Settings::default().tuning());
    let mut pool = InflaterPool::default();
    let m = text(3000);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut body = Vec::new();
        assert!(c.compress(&m, &mut shared, &mut body).unwrap());
        sizes.push(body.len());
        let frame = client_frame(true, true, 1, &body);
        let got = feed(&mut conn, &mut pool, &frame, 100).unwrap();
        assert!(got == vec![(MessageKind::Text, true, m.clone())]);
        assert!(conn.deflate.holds_state(), "the client's window is kept");
    }
    assert!(sizes[1] * 4 < sizes[0], "context takeover: {sizes:?}");
}
