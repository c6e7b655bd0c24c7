//! Tests of negotiation (offers and answers as strings, as browsers and
//! libraries send them), of the codec (RFC 7692's own examples, round
//! trips, fragmented input, corrupt data, a 200 MB bomb) and of memory
//! (measured with a per-thread counting allocator).

use super::*;
use negotiate::MAX_WINDOW_BITS;

// ---------------------------------------------------------------- server

fn accept(offer: &[&str]) -> Option<Accepted> {
    accept_offer(offer.iter().copied(), &Settings::default())
}

fn accept_with(offer: &str, settings: Settings) -> Option<Accepted> {
    accept_offer([offer], &settings)
}

fn neg(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> Negotiated {
    Negotiated {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

const SHARED_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn browsers_and_libraries_get_the_shared_compressor_answer_by_default() {
    for offer in [
        // Chrome, Safari, Node ws, Python websockets (client_max_window_bits
        // without a value).
        "permessage-deflate; client_max_window_bits",
        // Firefox.
        "permessage-deflate",
        // Older Chrome with its legacy extension listed too.
        "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
    ] {
        let a = accept(&[offer]).unwrap_or_else(|| panic!("{offer} declined"));
        assert_eq!(a.response, SHARED_ANSWER, "{offer}");
        assert_eq!(a.params, neg(true, true, 15, 15), "{offer}");
    }
}

#[test]
fn no_header_or_other_extensions_only_is_no_compression() {
    assert_eq!(accept(&[]), None);
    assert_eq!(accept(&["x-webkit-deflate-frame"]), None);
    assert_eq!(accept(&["foo; bar=1, baz"]), None);
}

#[test]
fn with_context_takeover_allowed_the_answer_is_bare() {
    let s = Settings {
        server_context_takeover: true,
        client_context_takeover: true,
        ..Settings::default()
    };
    let a = accept_with("permessage-deflate; client_max_window_bits", s).unwrap();
    assert_eq!(a.response, "permessage-deflate");
    assert_eq!(a.params, neg(false, false, 15, 15));
    // A client's own requests are honoured and named.
    let a = accept_with(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        s,
    )
    .unwrap();
    assert_eq!(a.response, SHARED_ANSWER);
    assert_eq!(a.params, neg(true, true, 15, 15));
}

#[test]
fn server_max_window_bits_is_granted_or_narrowed() {
    let a = accept(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
    assert_eq!(
        a.response,
        format!("{SHARED_ANSWER}; server_max_window_bits=10")
    );
    assert_eq!(a.params.server_max_window_bits, 10);
    // Our own limit below 15 is named even when not asked for.
    let s = Settings {
        server_max_window_bits: 12,
        ..Settings::default()
    };
    let a = accept_with("permessage-deflate", s).unwrap();
    assert_eq!(
        a.response,
        format!("{SHARED_ANSWER}; server_max_window_bits=12")
    );
    let a = accept_with("permessage-deflate; server_max_window_bits=14", s).unwrap();
    assert_eq!(a.params.server_max_window_bits, 12);
    let a = accept_with("permessage-deflate; server_max_window_bits=9", s).unwrap();
    assert!(
        a.response.ends_with("server_max_window_bits=9"),
        "{}",
        a.response
    );
}

#[test]
fn an_eight_bit_server_window_is_accepted_and_sent_uncompressed() {
    let a = accept(&["permessage-deflate; server_max_window_bits=8"]).unwrap();
    assert!(
        a.response.ends_with("; server_max_window_bits=8"),
        "{}",
        a.response
    );
    let out = a.params.outgoing(Role::Server);
    assert!(!out.can_compress());
    let mut conn = ConnDeflate::new(a.params, Role::Server, &Settings::default());
    let mut shared = SharedCompressor::new(Settings::default().tuning());
    let mut buf = Vec::new();
    assert_eq!(
        conn.compress(&[b'a'; 4096], &mut shared, &mut buf),
        Ok(false)
    );
    assert!(buf.is_empty());
    assert_eq!(conn.shared_key(4096), None);
}

#[test]
fn client_max_window_bits_is_named_only_when_offered_and_narrowed() {
    let s = Settings {
        client_max_window_bits: 12,
        client_context_takeover: true,
        ..Settings::default()
    };
    let cases = [
        // (offer, named in the answer, client window in force)
        ("permessage-deflate", None, 15),
        ("permessage-deflate; client_max_window_bits", Some(12), 12),
        ("permessage-deflate; client_max_window_bits=10", None, 10),
        (
            "permessage-deflate; client_max_window_bits=14",
            Some(12),
            12,
        ),
        ("permessage-deflate; client_max_window_bits=8", None, 8),
    ];
    for (offer, named, bits) in cases {
        let a = accept_with(offer, s).unwrap();
        let expected = match named {
            Some(n) => format!(
                "permessage-deflate; server_no_context_takeover; client_max_window_bits={n}"
            ),
            None => "permessage-deflate; server_no_context_takeover".to_string(),
        };
        assert_eq!(a.response, expected, "{offer}");
        assert_eq!(a.params.client_max_window_bits, bits, "{offer}");
        assert!(a.params.incoming(Role::Server).context_takeover);
        assert_eq!(
            a.params.incoming(Role::Server).inflate_window_bits(),
            bits.max(9),
            "{offer}"
        );
    }
    // With the default 15, a bare client_max_window_bits is not answered.
    let a = accept(&["permessage-deflate; client_max_window_bits"]).unwrap();
    assert!(!a.response.contains("client_max_window_bits"));
}

#[test]
fn malformed_or_duplicated_parameters_decline_that_offer() {
    for offer in [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; SERVER_MAX_WINDOW_BITS=11",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=ten",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"x\"",
        "permessage-deflate; mux",
        "permessage-deflate; =",
        "permessage-deflate; server_max_window_bits=\"1 0\"",
    ] {
        assert_eq!(accept(&[offer]), None, "{offer} should be declined");
        // ... and the next offer is taken instead.
        let both = format!("{offer}, permessage-deflate; client_max_window_bits");
        let a = accept(&[&both]).unwrap_or_else(|| panic!("{both}"));
        assert_eq!(a.response, SHARED_ANSWER, "{both}");
    }
}

#[test]
fn an_unterminated_quote_spoils_the_rest_of_its_line_only() {
    let line = "permessage-deflate; server_max_window_bits=\"10, permessage-deflate";
    assert_eq!(accept(&[line]), None);
    assert!(accept(&[line, "permessage-deflate"]).is_some());
}

#[test]
fn the_first_acceptable_offer_wins_across_header_lines() {
    let a = accept(&[
        "x-foo",
        "permessage-deflate; server_max_window_bits=10; bogus",
        "permessage-deflate; server_max_window_bits=11, permessage-deflate",
    ])
    .unwrap();
    assert_eq!(a.params.server_max_window_bits, 11);
}

#[test]
fn quoted_values_and_case_are_accepted() {
    let a = accept(&["Permessage-Deflate; Server_Max_Window_Bits=\"10\""]).unwrap();
    assert_eq!(a.params.server_max_window_bits, 10);
    let a = accept(&["permessage-deflate; client_max_window_bits=\"9\""]).unwrap();
    assert_eq!(a.params.client_max_window_bits, 9);
}

#[test]
fn autobahn_style_offer_lists_pick_the_first() {
    // Case 13.7.*: three offers in one header, most demanding first.
    let a = accept(&[
        "permessage-deflate; client_no_context_takeover; client_max_window_bits=8, permessage-deflate; client_no_context_takeover, permessage-deflate",
    ])
    .unwrap();
    assert_eq!(a.params, neg(true, true, 15, 8));
    assert_eq!(a.response, SHARED_ANSWER);
}

// ---------------------------------------------------------------- client

#[test]
fn the_default_offer_is_the_browsers_one() {
    assert_eq!(
        ClientOffer::default().header_value(),
        "permessage-deflate; client_max_window_bits"
    );
    let all = ClientOffer {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: ClientWindow::Max(11),
    };
    assert_eq!(
        all.header_value(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
    );
}

fn check(offer: ClientOffer, answer: &str) -> Result<Option<Negotiated>, AnswerError> {
    offer.check_answer([answer])
}

#[test]
fn answers_of_known_servers_are_understood() {
    let o = ClientOffer::default();
    assert_eq!(o.check_answer([]), Ok(None));
    assert_eq!(
        check(o, "permessage-deflate"),
        Ok(Some(neg(false, false, 15, 15)))
    );
    // uWebSockets with its shared compressor.
    assert_eq!(
        check(
            o,
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
        ),
        Ok(Some(neg(true, true, 15, 15)))
    );
    // Python websockets' server defaults.
    assert_eq!(
        check(
            o,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        ),
        Ok(Some(neg(false, false, 12, 12)))
    );
    // An 8-bit client window: we then send uncompressed.
    let n = check(o, "permessage-deflate; client_max_window_bits=8")
        .unwrap()
        .unwrap();
    assert!(!n.outgoing(Role::Client).can_compress());
    assert_eq!(n.incoming(Role::Client).inflate_window_bits(), 15);
}

#[test]
fn answers_the_rfc_forbids_fail_the_handshake() {
    let o = ClientOffer::default();
    for bad in [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate, permessage-deflate",
        "x-webkit-deflate-frame",
        "permessage-deflate, x-other",
        "permessage-deflate; x=\"unterminated",
        "permessage deflate",
    ] {
        let err = check(o, bad).expect_err(bad);
        assert!(err.to_string().contains("not acceptable"), "{err}");
    }
    // client_max_window_bits when it was not offered.
    let o = ClientOffer {
        client_max_window_bits: ClientWindow::NotOffered,
        ..ClientOffer::default()
    };
    assert!(check(o, "permessage-deflate; client_max_window_bits=10").is_err());
    assert_eq!(
        check(o, "permessage-deflate"),
        Ok(Some(neg(false, false, 15, 15)))
    );
    // Larger than offered, or a request not confirmed.
    let o = ClientOffer {
        server_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: ClientWindow::Max(11),
        ..ClientOffer::default()
    };
    let ok = "permessage-deflate; server_no_context_takeover; server_max_window_bits=9";
    assert_eq!(check(o, ok), Ok(Some(neg(true, false, 9, 11))));
    assert!(check(o, "permessage-deflate; server_max_window_bits=10").is_err());
    assert!(check(
        o,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"
    )
    .is_err());
    assert!(check(o, "permessage-deflate; server_no_context_takeover").is_err());
    assert!(check(
        o,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
    )
    .is_err());
}

#[test]
fn our_server_answers_satisfy_our_client_for_every_setting() {
    let offers = [
        ClientOffer::default(),
        ClientOffer {
            client_max_window_bits: ClientWindow::NotOffered,
            ..ClientOffer::default()
        },
        ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(9),
            client_max_window_bits: ClientWindow::Max(10),
        },
        ClientOffer {
            server_max_window_bits: Some(8),
            client_max_window_bits: ClientWindow::Max(8),
            ..ClientOffer::default()
        },
    ];
    for offer in offers {
        for (sct, cct) in [(false, false), (true, true), (true, false)] {
            for (sb, cb) in [(15, 15), (9, 12), (12, 9)] {
                let s = Settings {
                    server_context_takeover: sct,
                    client_context_takeover: cct,
                    server_max_window_bits: sb,
                    client_max_window_bits: cb,
                    ..Settings::default()
                };
                let a = accept_offer([offer.header_value().as_str()], &s).unwrap();
                let n = offer.check_answer([a.response.as_str()]);
                assert_eq!(n, Ok(Some(a.params)), "{offer:?} {s:?} -> {}", a.response);
            }
        }
    }
}

// ---------------------------------------------------------------- codec

fn tuning() -> DeflateTuning {
    Settings::default().tuning()
}

/// Both implementations: every codec test that does not measure one of
/// them runs on each, since both serve the same contract (zlib-rs the
/// worker's shared states, C zlib the ones a connection keeps).
pub(super) const BACKENDS: [Backend; 2] = [Backend::ZlibRs, Backend::CZlib];

pub(super) fn inflate_all(
    inflater: &mut Inflater,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    inflater.feed(data, true, limit, &mut out)?;
    Ok(out)
}

/// Deterministic JSON-like text of about `n` bytes.
pub(crate) fn json_like(n: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < n {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"user{}\",\"text\":\"message number {} in the room\",\"ok\":{}}},",
            i >> 40,
            (i >> 20) % 1000,
            i % 100_000,
            i % 2 == 0
        ));
    }
    s.truncate(n);
    s.into_bytes()
}

#[test]
fn rfc_7692_examples_inflate() {
    for backend in BACKENDS {
        rfc_7692_examples_inflate_on(backend);
    }
}

fn rfc_7692_examples_inflate_on(backend: Backend) {
    // §7.2.3.1 "Hello", §7.2.3.3 a stored block, §7.2.3.4 BFINAL set
    // (with a padding octet after the final block).
    for compressed in [
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
        &[
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ],
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
    ] {
        let mut inf = Inflater::with_backend(backend, 15);
        assert_eq!(inflate_all(&mut inf, compressed, 100).unwrap(), b"Hello");
        // The inflater is usable for the next message either way.
        assert_eq!(
            inflate_all(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(),
            b"Hello"
        );
    }
    // §7.2.3.2: the second "Hello" refers back into the first message.
    let mut inf = Inflater::with_backend(backend, 15);
    assert_eq!(
        inflate_all(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(),
        b"Hello"
    );
    assert_eq!(
        inflate_all(&mut inf, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(),
        b"Hello"
    );
}

#[test]
fn an_empty_message_compresses_to_one_zero_octet() {
    let mut shared = SharedCompressor::new(tuning());
    let mut out = Vec::new();
    shared.compress(15, b"", &mut out).unwrap();
    assert_eq!(out, [0x00], "RFC 7692 §7.2.3.6");
    assert_eq!(inflate_all(&mut Inflater::new(15), &out, 10).unwrap(), b"");
}

#[test]
fn messages_round_trip_at_every_window_and_level() {
    let messages = [
        b"Hello".to_vec(),
        json_like(127),
        json_like(16 << 10),
        json_like(300 << 10),
        (0..70_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ];
    for bits in 9..=15u8 {
        for level in [1u8, 6, 9] {
            let mut shared = SharedCompressor::new(DeflateTuning {
                level,
                memory_level: 8,
            });
            for m in &messages {
                let mut out = vec![0xAA]; // appending keeps what was there
                shared.compress(bits, m, &mut out).unwrap();
                assert_eq!(out[0], 0xAA);
                let back = inflate_all(&mut Inflater::new(bits), &out[1..], m.len()).unwrap();
                assert!(back == *m, "bits {bits} level {level} len {}", m.len());
            }
        }
    }
}

#[test]
fn the_shared_compressor_gives_the_same_bytes_every_time() {
    // What makes compress-once broadcast valid: no state leaks between
    // messages, so receivers with the same window get identical payloads.
    let mut shared = SharedCompressor::new(tuning());
    let m = json_like(16 << 10);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    shared.compress(15, &m, &mut a).unwrap();
    shared
        .compress(15, &json_like(5000), &mut Vec::new())
        .unwrap();
    shared.compress(15, &m, &mut b).unwrap();
    Compressor::new(tuning(), 15).compress(&m, &mut c).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert!(
        a.len() * 3 < m.len(),
        "JSON should shrink 3x: {} of {}",
        a.len(),
        m.len()
    );
}

#[test]
fn context_takeover_makes_repeated_messages_smaller() {
    for (deflater, inflater) in [
        (Backend::ZlibRs, Backend::ZlibRs),
        (Backend::CZlib, Backend::CZlib),
        (Backend::CZlib, Backend::ZlibRs),
        (Backend::ZlibRs, Backend::CZlib),
    ] {
        context_takeover_on(deflater, inflater);
    }
}

fn context_takeover_on(deflater: Backend, inflater: Backend) {
    let m = json_like(4000);
    let mut keep = Compressor::with_backend(deflater, tuning(), 15);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    keep.compress(&m, &mut first).unwrap();
    keep.compress(&m, &mut second).unwrap();
    // (C zlib's level 1 makes 79 bytes of the second 4,000, zlib-rs's fewer.)
    assert!(
        second.len() * 8 < first.len(),
        "{deflater:?}: {} vs {}",
        second.len(),
        first.len()
    );
    // The receiver must keep its window to read it ...
    let mut inf = Inflater::with_backend(inflater, 15);
    assert_eq!(inflate_all(&mut inf, &first, 1 << 20).unwrap(), m);
    assert_eq!(inflate_all(&mut inf, &second, 1 << 20).unwrap(), m);
    // ... and one that forgot it cannot.
    let mut inf = Inflater::with_backend(inflater, 15);
    inflate_all(&mut inf, &first, 1 << 20).unwrap();
    inf.reset();
    assert!(inflate_all(&mut inf, &second, 1 << 20).is_err());
}

#[test]
fn fragmented_input_inflates_chunk_by_chunk() {
    for backend in BACKENDS {
        fragmented_input_on(backend);
    }
}

fn fragmented_input_on(backend: Backend) {
    let m = json_like(100_000);
    let mut compressed = Vec::new();
    Compressor::new(tuning(), 15)
        .compress(&m, &mut compressed)
        .unwrap();
    for chunk in [1, 7, 100, 4096] {
        let mut inf = Inflater::with_backend(backend, 15);
        let mut out = Vec::new();
        let mut total = 0;
        let mut saw_output_before_the_end = false;
        let pieces: Vec<&[u8]> = compressed.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let n = inf.feed(piece, last, m.len(), &mut out).unwrap();
            saw_output_before_the_end |= n > 0 && !last;
            total += n;
            assert_eq!(total, out.len());
        }
        assert!(
            saw_output_before_the_end,
            "chunk {chunk}: output must come as input arrives"
        );
        assert!(out == m, "chunk {chunk}");
    }
    // The final frame's bytes may all have come already: `last` with nothing.
    let mut inf = Inflater::with_backend(backend, 15);
    let mut out = Vec::new();
    inf.feed(&compressed, false, m.len(), &mut out).unwrap();
    inf.feed(&[], true, m.len(), &mut out).unwrap();
    assert!(out == m);
}

#[test]
fn corrupt_data_is_an_error_with_the_right_close_code() {
    for bad in [
        &[0xff, 0xff, 0xff, 0xff][..],
        &[0x07],
        &[0xf2, 0x48, 0x00, 0x00, 0x00, 0xff],
    ] {
        for backend in BACKENDS {
            let mut inf = Inflater::with_backend(backend, 15);
            let err = inflate_all(&mut inf, bad, 1 << 20).unwrap_err();
            assert!(
                matches!(err, InflateError::Corrupt(_)),
                "{backend:?} {bad:?}: {err:?}"
            );
            assert_eq!(err.close_code(true), 1007);
            assert_eq!(err.close_code(false), 1002);
            assert!(err.to_string().starts_with("invalid compressed data"));
        }
    }
    let too_big = InflateError::TooBig { limit: 5 };
    assert_eq!(too_big.close_code(true), 1009);
    assert_eq!(too_big.close_code(false), 1009);
}

#[test]
fn no_limit_means_no_limit() {
    // A client without max_message_size passes usize::MAX, into a buffer
    // that already holds bytes.
    let m = json_like(10_000);
    let mut c = Vec::new();
    Compressor::new(tuning(), 15).compress(&m, &mut c).unwrap();
    for backend in BACKENDS {
        let mut out = b"prefix".to_vec();
        let n = Inflater::with_backend(backend, 15)
            .feed(&c, true, usize::MAX, &mut out)
            .unwrap();
        assert_eq!(n, m.len());
        assert!(out[6..] == m[..]);
    }
}

#[test]
fn the_limit_is_exact() {
    let m = json_like(10_000);
    let mut c = Vec::new();
    Compressor::new(tuning(), 15).compress(&m, &mut c).unwrap();
    for backend in BACKENDS {
        let inf = || Inflater::with_backend(backend, 15);
        assert!(inflate_all(&mut inf(), &c, 10_000).is_ok());
        assert_eq!(
            inflate_all(&mut inf(), &c, 9_999),
            Err(InflateError::TooBig { limit: 9_999 })
        );
    }
}

// ---------------------------------------------------------------- memory

use crate::test_alloc as counting;

/// Heap bytes `make` leaves allocated.
pub(super) fn held_by<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = counting::live();
    let value = make();
    (value, counting::live() - before)
}

/// A compressed message that inflates to `n_mib` MiB of zeros, built from
/// one repeated sync-flushed piece so that building it is cheap.
fn bomb(n_mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let best = DeflateTuning {
        level: 9,
        memory_level: 9,
    };
    let mut c = Compressor::new(best, 15);
    let mut pieces = Vec::new();
    for _ in 0..3 {
        let mut p = Vec::new();
        c.compress(&zeros, &mut p).unwrap();
        p.extend_from_slice(&SYNC_TAIL); // keep the flush between pieces
        pieces.push(p);
    }
    assert_eq!(pieces[1], pieces[2], "a steady state piece repeats");
    let mut out = pieces[0].clone();
    for _ in 1..n_mib {
        out.extend_from_slice(&pieces[1]);
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    out
}

#[test]
fn a_bomb_stops_at_the_limit_without_allocating_past_it() {
    let data = bomb(200);
    eprintln!("bomb: {} compressed bytes inflate to 200 MiB", data.len());
    assert!(data.len() < 400 << 10, "bomb is {} bytes", data.len());
    for backend in BACKENDS {
        bomb_stops_on(backend, &data);
    }
}

fn bomb_stops_on(backend: Backend, data: &[u8]) {
    // Sanity: the bomb is real (its first 4 MiB inflate to zeros).
    let mut sample = Vec::new();
    let err = Inflater::with_backend(backend, 15).feed(data, true, 4 << 20, &mut sample);
    assert_eq!(err, Err(InflateError::TooBig { limit: 4 << 20 }));
    assert!(sample.iter().all(|&b| b == 0));
    drop(sample);

    let limit = 1 << 20;
    let base = counting::reset_peak();
    let mut out = Vec::new();
    let mut inf = Inflater::with_backend(backend, 15);
    // Fed in frame-sized pieces, as the frame reader would.
    let mut result = Ok(0);
    let pieces: Vec<&[u8]> = data.chunks(64 << 10).collect();
    let mut fed = 0;
    for (i, piece) in pieces.iter().enumerate() {
        fed += piece.len();
        result = inf.feed(piece, i + 1 == pieces.len(), limit, &mut out);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(InflateError::TooBig { limit }));
    assert!(
        fed <= 128 << 10,
        "{backend:?}: stopped after {fed} compressed bytes"
    );
    assert!(out.len() <= limit + 1);
    let peak = counting::peak() - base;
    eprintln!("bomb, {backend:?}: peak heap {peak} bytes for a {limit}-byte limit");
    assert!(
        peak <= (limit + (64 << 10)) as isize,
        "{backend:?}: peak heap {peak} for limit {limit}"
    );
}

#[test]
fn an_idle_connection_without_context_holds_nothing() {
    let params = accept(&["permessage-deflate; client_max_window_bits"])
        .unwrap()
        .params;
    let settings = Settings::default();
    let (mut conn, held) = held_by(|| ConnDeflate::new(params, Role::Server, &settings));
    assert_eq!(held, 0);
    assert!(std::mem::size_of::<ConnDeflate>() <= 64);
    let mut shared = SharedCompressor::new(settings.tuning());
    let mut pool = InflaterPool::default();
    let m = json_like(16 << 10);
    let mut compressed = Vec::new();
    Compressor::new(tuning(), 15)
        .compress(&m, &mut compressed)
        .unwrap();
    // A 16 KiB JSON echo, twice: the first creates the worker's shared
    // compressor and pooled inflater; the second must allocate nothing
    // that outlives it.
    for round in 0..2 {
        let before = counting::live();
        let mut inflated = Vec::new();
        conn.inflate(&compressed[..100], false, 1 << 20, &mut pool, &mut inflated)
            .unwrap();
        assert!(conn.holds_state(), "mid-message the inflater lives");
        conn.inflate(&compressed[100..], true, 1 << 20, &mut pool, &mut inflated)
            .unwrap();
        assert!(inflated == m);
        let mut reply = Vec::new();
        assert_eq!(conn.compress(&inflated, &mut shared, &mut reply), Ok(true));
        assert_eq!(conn.shared_key(inflated.len()), Some(15));
        drop((inflated, reply));
        assert!(!conn.holds_state());
        if round == 1 {
            assert_eq!(counting::live() - before, 0, "nothing held after the echo");
        }
    }
    // Under the threshold: sent as is.
    assert_eq!(
        conn.compress(b"short", &mut shared, &mut Vec::new()),
        Ok(false)
    );
    assert_eq!(conn.shared_key(5), None);
}

#[test]
fn a_peer_keeping_its_context_keeps_an_inflater_sized_to_its_window() {
    let settings = Settings {
        client_context_takeover: true,
        client_max_window_bits: 10,
        ..Settings::default()
    };
    let params = accept_with("permessage-deflate; client_max_window_bits", settings)
        .unwrap()
        .params;
    assert_eq!(params.client_max_window_bits, 10);
    let mut conn = ConnDeflate::new(params, Role::Server, &settings);
    let m = json_like(2000);
    let mut client = Compressor::new(tuning(), 10);
    for _ in 0..3 {
        let mut c = Vec::new();
        client.compress(&m, &mut c).unwrap();
        let mut out = Vec::new();
        conn.inflate(&c, true, 1 << 20, &mut InflaterPool::default(), &mut out)
            .unwrap();
        assert!(out == m);
        assert!(conn.holds_state());
    }
}

#[test]
fn memory_of_deflate_and_inflate_states() {
    // Informs the defaults (docs/compression.md quotes these figures).
    let mut rows = Vec::new();
    for bits in 9..=MAX_WINDOW_BITS {
        let mut row = vec![bits as isize];
        for mem in [1u8, 4, 8, 9] {
            let t = DeflateTuning {
                level: 1,
                memory_level: mem,
            };
            let (c, held) = held_by(|| Compressor::new(t, bits));
            drop(c);
            row.push(held);
        }
        let (mut inf, fresh) = held_by(|| Inflater::new(bits));
        let mut compressed = Vec::new();
        Compressor::new(tuning(), bits)
            .compress(&json_like(40_000), &mut compressed)
            .unwrap();
        let before = counting::live();
        let mut out = Vec::new();
        inf.feed(&compressed, true, 1 << 20, &mut out).unwrap();
        drop(out);
        let grown = counting::live() - before;
        row.push(fresh);
        row.push(fresh + grown);
        rows.push(row);
    }
    eprintln!("bits | deflate mem1 | mem4 | mem8 | mem9 | inflate new | inflate after a message");
    for r in &rows {
        eprintln!(
            "{} | {} | {} | {} | {} | {} | {}",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6]
        );
    }
    // Larger windows and memory levels cost more to deflate; zlib-rs
    // inflates with its full 32 KiB window whatever the window bits, so
    // an inflater (what a peer keeping its context costs per connection)
    // is about 46 KiB at every size.
    for r in &rows {
        assert!(r[1] < r[3] && r[3] <= r[4], "{r:?}");
        assert!(r[6] <= 48 << 10, "{r:?}");
    }
    assert!(rows[0][3] < rows[6][3], "{:?} vs {:?}", rows[0], rows[6]);
}

/// Size and time per level for a 16 KiB JSON-like message, on both
/// implementations (a fresh context per message, as the shared
/// compressor and the pooled inflaters work), for docs/compression.md:
/// `cargo test --release --lib report_levels -- --ignored --nocapture`
/// (timings need a release build).
#[test]
#[ignore]
fn report_levels() {
    let m = json_like(16 << 10);
    for backend in BACKENDS {
        for (bits, memory_level) in [(15u8, 8u8), (9, 1)] {
            for level in [1u8, 2, 6, 9] {
                let tuning = DeflateTuning {
                    level,
                    memory_level,
                };
                let mut c = Compressor::with_backend(backend, tuning, bits);
                let mut out = Vec::new();
                c.compress(&m, &mut out).unwrap();
                let n = 2000;
                let t = std::time::Instant::now();
                for _ in 0..n {
                    c.reset();
                    out.clear();
                    c.compress(&m, &mut out).unwrap();
                }
                let cu = t.elapsed().as_secs_f64() / n as f64 * 1e6;
                let mut inf = Inflater::with_backend(backend, bits);
                let t = std::time::Instant::now();
                for _ in 0..n {
                    let mut o = Vec::new();
                    inf.feed(&out, true, 1 << 20, &mut o).unwrap();
                    inf.reset();
                }
                let d = t.elapsed().as_secs_f64() / n as f64 * 1e6;
                eprintln!(
                    "{backend:?} {bits}/{memory_level} level {level}: {} -> {} bytes, compress {cu:.1} us, inflate {d:.1} us",
                    m.len(),
                    out.len()
                );
            }
        }
    }
}

/// Runs `script` with Python 3 (an independent zlib: C zlib through
/// Python's `zlib` module), `input` as hex in argv[1]; returns its stdout.
pub(super) fn python(script: &str, input: &[u8]) -> String {
    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
    let out = std::process::Command::new("python3")
        .args(["-c", script, &hex])
        .output()
        .expect("python3 is needed for this test (.ci/run installs it)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub(super) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn c_zlib_reads_what_we_compress_and_we_read_what_it_compresses() {
    let m = json_like(20_000);
    // Ours -> C zlib, as a peer's RFC 7692 receiver does it.
    let mut ours = Vec::new();
    SharedCompressor::new(tuning())
        .compress(15, &m, &mut ours)
        .unwrap();
    let back = python(
        "import sys, zlib\n\
         d = zlib.decompressobj(-15)\n\
         print(d.decompress(bytes.fromhex(sys.argv[1]) + b'\\x00\\x00\\xff\\xff').hex())",
        &ours,
    );
    assert!(unhex(&back) == m, "C zlib did not read our message back");
    // C zlib -> ours, compressed as Python websockets' server does
    // (12-bit window, memLevel 5, sync flush, tail removed).
    let theirs = python(
        "import sys, zlib\n\
         c = zlib.compressobj(6, zlib.DEFLATED, -12, 5)\n\
         d = c.compress(bytes.fromhex(sys.argv[1])) + c.flush(zlib.Z_SYNC_FLUSH)\n\
         assert d.endswith(b'\\x00\\x00\\xff\\xff')\n\
         print(d[:-4].hex())",
        &m,
    );
    let got = inflate_all(&mut Inflater::new(12), &unhex(&theirs), 1 << 20).unwrap();
    assert!(got == m, "we did not read C zlib's message");
}

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// RSS per connection-held state after one 16 KiB JSON message, for
/// docs/compression.md. One case per process (freed pages stay in RSS):
/// `WSSD_RSS=deflate:15:8 cargo test --lib report_rss -- --ignored
/// --nocapture` (or `inflate:15`; a `c-` prefix, `c-deflate:9:1`, runs
/// C zlib instead of zlib-rs).
#[test]
#[ignore]
fn report_rss() {
    let case = std::env::var("WSSD_RSS").unwrap_or_else(|_| "deflate:15:8".into());
    let backend = if case.starts_with("c-") {
        Backend::CZlib
    } else {
        Backend::ZlibRs
    };
    let parts: Vec<u8> = case
        .split(':')
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    let m = json_like(16 << 10);
    let mut compressed = Vec::new();
    Compressor::new(tuning(), parts[0])
        .compress(&m, &mut compressed)
        .unwrap();
    let n = 2000;
    let before = rss_kib();
    let mut deflaters = Vec::new();
    let mut inflaters = Vec::new();
    for _ in 0..n {
        if case.contains("deflate") {
            let t = DeflateTuning {
                level: 1,
                memory_level: parts[1],
            };
            let mut c = Compressor::with_backend(backend, t, parts[0]);
            c.compress(&m, &mut Vec::new()).unwrap();
            deflaters.push(c);
        } else {
            let mut inf = Inflater::with_backend(backend, parts[0]);
            inflate_all(&mut inf, &compressed, 1 << 20).unwrap();
            inflaters.push(inf);
        }
    }
    let per = (rss_kib() - before) as f64 / n as f64;
    eprintln!("{case}: {per:.1} KiB RSS each after one 16 KiB message");
}
