//! Raw-frame tests of the message layer: frames built by hand, fed in
//! reads of every size, through the real frame reader and writer.

use super::message::{Inbound, MessageError, MessageLayer};
use super::negotiate::Role as Side;
use super::*;
use crate::frame::{apply_mask, CloseCode, EncodedHeader, Input, Limits, MessageKind, Role};

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

fn server(deflate: Option<ConnDeflate>, max_message: usize) -> MessageLayer {
    MessageLayer::new(Role::Server, limits(max_message), deflate)
}

type Got = Vec<(MessageKind, bool, Vec<u8>)>;

/// Feeds `bytes` to `layer` in reads of `read_size` bytes; the data
/// messages received, or the first error.
fn feed(
    layer: &mut MessageLayer,
    pool: &mut InflaterPool,
    bytes: &[u8],
    read_size: usize,
) -> Result<Got, MessageError> {
    let mut got = Vec::new();
    for chunk in bytes.chunks(read_size.max(1)) {
        let mut scratch = chunk.to_vec();
        let mut input = Input::new(&mut scratch);
        while let Some(event) = layer.read(&mut input, pool)? {
            if let Inbound::Message {
                kind,
                compressed,
                payload,
            } = event
            {
                got.push((kind, compressed, payload.to_vec()));
            }
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

#[test]
fn a_compressed_frame_without_negotiation_is_1002() {
    let frame = client_frame(true, true, 1, &compress(b"hello hello hello"));
    let mut layer = server(None, 1 << 20);
    assert_eq!(
        code(feed(&mut layer, &mut InflaterPool::default(), &frame, 1000)),
        CloseCode::Protocol
    );
}

#[test]
fn rsv1_on_a_control_frame_is_1002() {
    let (s, _) = pair(Settings::default(), ClientOffer::default());
    let mut layer = server(Some(s), 1 << 20);
    let ping = client_frame(true, true, 9, b"ping");
    assert_eq!(
        code(feed(&mut layer, &mut InflaterPool::default(), &ping, 1000)),
        CloseCode::Protocol
    );
}

#[test]
fn rsv1_on_a_continuation_frame_is_1002() {
    let (s, _) = pair(Settings::default(), ClientOffer::default());
    let mut layer = server(Some(s), 1 << 20);
    let c = compress(&text(4000));
    let mut bytes = client_frame(false, true, 1, &c[..10]);
    bytes.extend(client_frame(true, true, 0, &c[10..]));
    assert_eq!(
        code(feed(&mut layer, &mut InflaterPool::default(), &bytes, 1000)),
        CloseCode::Protocol
    );
    // The same frames with RSV1 on the first only are a valid message.
    let (s, _) = pair(Settings::default(), ClientOffer::default());
    let mut layer = server(Some(s), 1 << 20);
    let mut bytes = client_frame(false, true, 1, &c[..10]);
    bytes.extend(client_frame(true, false, 0, &c[10..]));
    let got = feed(&mut layer, &mut InflaterPool::default(), &bytes, 1000).unwrap();
    assert_eq!(got, vec![(MessageKind::Text, true, text(4000))]);
}

#[test]
fn a_fragmented_compressed_message_inflates_across_frames_and_reads() {
    let m = text(50_000);
    let c = compress(&m);
    let third = c.len() / 3;
    let mut bytes = client_frame(false, true, 1, &c[..third]);
    bytes.extend(client_frame(false, false, 0, &c[third..2 * third]));
    bytes.extend(client_frame(true, false, 0, &c[2 * third..]));
    // An uncompressed message after it on the same connection.
    bytes.extend(client_frame(true, false, 2, b"\x00\x01plain"));
    for read_size in [1, 5, 64, 1500, bytes.len()] {
        let (s, _) = pair(Settings::default(), ClientOffer::default());
        let mut layer = server(Some(s), 1 << 20);
        let mut pool = InflaterPool::default();
        let got = feed(&mut layer, &mut pool, &bytes, read_size).unwrap();
        assert_eq!(got.len(), 2, "reads of {read_size}");
        assert!(
            got[0] == (MessageKind::Text, true, m.clone()),
            "reads of {read_size}"
        );
        assert_eq!(
            got[1],
            (MessageKind::Binary, false, b"\x00\x01plain".to_vec())
        );
        assert!(!layer.holds_state(), "nothing kept after the messages");
    }
}

#[test]
fn inflated_text_that_is_not_utf8_fails_with_1007_before_the_limit() {
    // The invalid byte comes first; the rest would pass the limit: the
    // text check stops inflation first.
    let mut m = vec![0xff];
    m.extend(std::iter::repeat_n(b'a', 4 << 20));
    let frame = client_frame(true, true, 1, &compress(&m));
    let (s, _) = pair(Settings::default(), ClientOffer::default());
    let mut layer = server(Some(s), 1 << 20);
    let err = feed(&mut layer, &mut InflaterPool::default(), &frame, 1 << 20).unwrap_err();
    assert_eq!(err, MessageError::InvalidUtf8);
    assert_eq!(err.close_code(), CloseCode::Invalid);
    // A character cut at the end of the message is invalid too.
    let frame = client_frame(true, true, 1, &compress("né".as_bytes()[..2].as_ref()));
    let (s, _) = pair(Settings::default(), ClientOffer::default());
    let mut layer = server(Some(s), 1 << 20);
    assert_eq!(
        code(feed(&mut layer, &mut InflaterPool::default(), &frame, 100)),
        CloseCode::Invalid
    );
}

#[test]
fn a_message_inflating_past_the_limit_is_1009() {
    let frame = client_frame(true, true, 2, &compress(&vec![0u8; 8 << 20]));
    let (s, _) = pair(Settings::default(), ClientOffer::default());
    let mut layer = server(Some(s), 1 << 20);
    let mut pool = InflaterPool::default();
    assert_eq!(
        code(feed(&mut layer, &mut pool, &frame, 64 << 10)),
        CloseCode::Size
    );
}

#[test]
fn undecodable_data_is_1007_for_text_and_1002_for_binary() {
    for (opcode, expected) in [(1, CloseCode::Invalid), (2, CloseCode::Protocol)] {
        let frame = client_frame(true, true, opcode, &[0xff, 0xff, 0xff, 0x00]);
        let (s, _) = pair(Settings::default(), ClientOffer::default());
        let mut layer = server(Some(s), 1 << 20);
        assert_eq!(
            code(feed(&mut layer, &mut InflaterPool::default(), &frame, 100)),
            expected
        );
    }
}

#[test]
fn an_empty_compressed_message_is_accepted() {
    let (s, _) = pair(Settings::default(), ClientOffer::default());
    let mut layer = server(Some(s), 1 << 20);
    for payload in [&[0x00][..], &[]] {
        let frame = client_frame(true, true, 1, payload);
        let got = feed(&mut layer, &mut InflaterPool::default(), &frame, 100).unwrap();
        assert_eq!(got, vec![(MessageKind::Text, true, Vec::new())]);
    }
}

/// The frames in `bytes` as (first byte, payload length), server side (unmasked).
fn frame_heads(mut bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut heads = Vec::new();
    while !bytes.is_empty() {
        let (len, at) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        heads.push((bytes[0], len));
        bytes = &bytes[at + len..];
    }
    heads
}

#[test]
fn the_server_compresses_once_per_message_with_rsv1_on_the_first_frame_only() {
    let (s, c) = pair(Settings::default(), ClientOffer::default());
    let mut server_layer = server(Some(s), 1 << 20);
    let mut client_layer = MessageLayer::new(Role::Client, limits(1 << 20), Some(c));
    let mut shared = SharedCompressor::new(Settings::default().tuning());
    let m = text(16 << 10);
    let mut out = Vec::new();
    server_layer.append_message(MessageKind::Text, &m, Some(200), &mut shared, &mut out);
    let heads = frame_heads(&out);
    assert!(heads.len() > 1 && heads.len() < 16, "{heads:?}");
    assert_eq!(heads[0].0, 0x41, "text, RSV1, no FIN: {heads:?}");
    assert!(
        heads[1..heads.len() - 1].iter().all(|h| h.0 == 0x00),
        "{heads:?}"
    );
    assert_eq!(heads[heads.len() - 1].0, 0x80);
    // Under the threshold: plain.
    server_layer.append_message(MessageKind::Binary, b"tiny", None, &mut shared, &mut out);
    let mut pool = InflaterPool::default();
    let got = feed(&mut client_layer, &mut pool, &out, 777).unwrap();
    assert_eq!(
        got,
        vec![
            (MessageKind::Text, true, m),
            (MessageKind::Binary, false, b"tiny".to_vec())
        ]
    );
}

#[test]
fn a_client_keeping_its_context_is_read_message_after_message() {
    let settings = Settings {
        client_context_takeover: true,
        ..Settings::default()
    };
    let (s, c) = pair(settings, ClientOffer::default());
    let mut server_layer = server(Some(s), 1 << 20);
    let mut client_layer = MessageLayer::new(Role::Client, limits(1 << 20), Some(c));
    let mut shared = SharedCompressor::new(Settings::default().tuning());
    let mut pool = InflaterPool::default();
    let m = text(3000);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut out = Vec::new();
        client_layer.append_message(MessageKind::Text, &m, None, &mut shared, &mut out);
        sizes.push(out.len());
        let got = feed(&mut server_layer, &mut pool, &out, 100).unwrap();
        assert!(got == vec![(MessageKind::Text, true, m.clone())]);
        assert!(server_layer.holds_state(), "the client's window is kept");
    }
    assert!(sizes[1] * 4 < sizes[0], "context takeover: {sizes:?}");
}

#[test]
fn an_echo_leaves_the_connection_holding_nothing() {
    let (s, c) = pair(Settings::default(), ClientOffer::default());
    let mut server_layer = server(Some(s), 1 << 20);
    let mut client_layer = MessageLayer::new(Role::Client, limits(1 << 20), Some(c));
    let mut shared = SharedCompressor::new(Settings::default().tuning());
    let mut pool = InflaterPool::default();
    let m = text(16 << 10);
    let mut request = Vec::new();
    client_layer.append_message(MessageKind::Text, &m, None, &mut shared, &mut request);
    let got = feed(&mut server_layer, &mut pool, &request, 4096).unwrap();
    let mut reply = Vec::new();
    server_layer.append_message(MessageKind::Text, &got[0].2, None, &mut shared, &mut reply);
    assert!(!server_layer.holds_state());
    assert!(server_layer.compression().is_some());
    let back = feed(&mut client_layer, &mut pool, &reply, 4096).unwrap();
    assert!(back == vec![(MessageKind::Text, true, m)]);
}

#[test]
fn a_broadcast_is_compressed_once_for_every_receiver_with_the_same_window() {
    // Three receivers: two browsers (15 bits) and one that asked for a
    // 10-bit server window; one more without compression.
    let offers = [
        ClientOffer::default(),
        ClientOffer::default(),
        ClientOffer {
            server_max_window_bits: Some(10),
            ..ClientOffer::default()
        },
    ];
    let mut receivers: Vec<(MessageLayer, MessageLayer)> = offers
        .iter()
        .map(|&offer| {
            let (s, c) = pair(Settings::default(), offer);
            (
                server(Some(s), 1 << 20),
                MessageLayer::new(Role::Client, limits(1 << 20), Some(c)),
            )
        })
        .collect();
    receivers.push((
        server(None, 1 << 20),
        MessageLayer::new(Role::Client, limits(1 << 20), None),
    ));
    let m = text(16 << 10);
    let mut shared = SharedCompressor::new(Settings::default().tuning());
    let mut by_key: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut compressions = 0;
    let mut pool = InflaterPool::default();
    for (server_layer, client_layer) in &mut receivers {
        let key = server_layer
            .compression()
            .and_then(|d| d.shared_key(m.len()));
        let mut out = Vec::new();
        match key {
            Some(bits) => {
                if !by_key.iter().any(|(k, _)| *k == bits) {
                    let mut c = Vec::new();
                    shared.compress(bits, &m, &mut c).unwrap();
                    compressions += 1;
                    by_key.push((bits, c));
                }
                let body = &by_key.iter().find(|(k, _)| *k == bits).unwrap().1;
                server_layer.append_frames(MessageKind::Text, body, true, None, &mut out);
            }
            None => server_layer.append_frames(MessageKind::Text, &m, false, None, &mut out),
        }
        let got = feed(client_layer, &mut pool, &out, 1000).unwrap();
        assert!(got == vec![(MessageKind::Text, key.is_some(), m.clone())]);
    }
    assert_eq!(compressions, 2, "one per window size, not one per receiver");
}
