//! Tests of C zlib (`zlib`) as the implementation of the states a
//! connection keeps: context kept across messages both ways and across
//! implementations, memory that follows the window bits and
//! `memory_level`, what a connection holds with context takeover, text
//! checks and window bits 8. The codec tests in `tests.rs` (RFC 7692's
//! examples, fragmented input, corrupt data, the limit, the bomb) run on
//! both implementations.

use super::tests::{held_by, inflate_all, json_like, python, unhex};
use super::zlib::{ZDeflate, ZInflate};
use super::*;
use crate::test_alloc as counting;

fn c_compressor(bits: u8, memory_level: u8) -> Compressor {
    let tuning = DeflateTuning {
        level: 1,
        memory_level,
    };
    Compressor::with_backend(Backend::CZlib, tuning, bits)
}

/// Messages that share most of their bytes, as a chat or a feed does.
fn similar_messages() -> Vec<Vec<u8>> {
    (0..5).map(|i| json_like(3000 + 700 * i)).collect()
}

#[test]
fn a_kept_context_round_trips_across_messages() {
    for (bits, mem) in [(15, 8), (12, 4), (9, 1)] {
        let mut c = c_compressor(bits, mem);
        assert_eq!(c.backend(), Backend::CZlib);
        // Read by a kept C zlib inflater and by zlib-rs's (the other
        // implementation), each keeping its window.
        let mut ours = Inflater::with_backend(Backend::CZlib, bits);
        let mut other = Inflater::with_backend(Backend::ZlibRs, bits);
        let mut sizes = Vec::new();
        let mut stream = Vec::new();
        for m in similar_messages() {
            let mut out = Vec::new();
            c.compress(&m, &mut out).unwrap();
            sizes.push(out.len());
            assert!(
                inflate_all(&mut ours, &out, 1 << 20).unwrap() == m,
                "{bits}/{mem}"
            );
            assert!(
                inflate_all(&mut other, &out, 1 << 20).unwrap() == m,
                "{bits}/{mem}"
            );
            stream.extend_from_slice(&out);
            stream.extend_from_slice(&SYNC_TAIL);
        }
        if bits == 15 {
            // Each message mostly repeats the one before: with the window
            // kept it costs a fraction of what it costs alone.
            let mut shared = SharedCompressor::new(Settings::default().tuning());
            for (m, size) in similar_messages().iter().zip(&sizes).skip(1) {
                let mut alone = Vec::new();
                shared.compress(15, m, &mut alone).unwrap();
                assert!(size * 2 < alone.len(), "{sizes:?}: {}", alone.len());
            }
        }
        // An independent reader (Python's zlib module) with its context
        // kept reads the whole sequence.
        let back = python(
            "import sys, zlib\n\
             d = zlib.decompressobj(-15)\n\
             print(d.decompress(bytes.fromhex(sys.argv[1])).hex())",
            &stream,
        );
        assert!(
            unhex(&back) == similar_messages().concat(),
            "{bits}/{mem}: Python's zlib did not read the sequence"
        );
        // After a reset the next message stands alone.
        c.reset();
        let mut out = Vec::new();
        c.compress(&json_like(500), &mut out).unwrap();
        let fresh = &mut Inflater::with_backend(Backend::CZlib, bits);
        assert_eq!(inflate_all(fresh, &out, 1 << 20).unwrap(), json_like(500));
    }
}

#[test]
fn memory_follows_the_window_bits_and_memory_level() {
    // C zlib's raw deflate state: window and chain links 2^(bits+2), hash
    // heads and symbol buffer 2^(mem+9), about 6 KiB of state besides.
    let mut held_at = Vec::new();
    for (bits, mem) in [(9u8, 1u8), (12, 4), (15, 1), (15, 8)] {
        let before = counting::live();
        let (mut c, held) = held_by(|| c_compressor(bits, mem));
        let expected = (1isize << (bits + 2)) + (1 << (mem + 9));
        assert!(
            held >= expected && held <= expected + (8 << 10),
            "{bits}/{mem}: {held} bytes, expected {expected} + state"
        );
        c.compress(&json_like(16 << 10), &mut Vec::new()).unwrap();
        assert_eq!(counting::live() - before, held, "compressing keeps no more");
        drop(c);
        assert_eq!(counting::live(), before, "{bits}/{mem}: Drop frees it all");
        held_at.push(held);
    }
    eprintln!("C zlib deflate at 9/1, 12/4, 15/1, 15/8: {held_at:?} bytes");
    assert!(held_at[0] < 16 << 10, "9/1 is {} bytes", held_at[0]);

    // Inflate: about 7 KiB of state, and the window once output needs it.
    for bits in [9u8, 12, 15] {
        let mut compressed = Vec::new();
        c_compressor(bits, 8)
            .compress(&json_like(16 << 10), &mut compressed)
            .unwrap();
        let before = counting::live();
        let (mut inf, fresh) = held_by(|| Inflater::with_backend(Backend::CZlib, bits));
        assert!(fresh <= 8 << 10, "{bits}: {fresh} bytes fresh");
        drop(inflate_all(&mut inf, &compressed, 1 << 20).unwrap());
        let held = counting::live() - before;
        assert!(
            held > fresh && held <= fresh + (1 << bits) + 64,
            "{bits}: {held} bytes after a message"
        );
        drop(inf);
        assert_eq!(counting::live(), before, "{bits}: Drop frees it all");
        // (Printed last: the test harness's capture buffer grows on this
        // thread and would count as held.)
        eprintln!("C zlib inflate at {bits} bits: {fresh} bytes fresh, {held} after a message");
    }
}

#[test]
fn a_connection_keeping_its_context_holds_what_its_settings_allow() {
    // uWebSockets' dedicated compressor in effect: 9-bit window, memLevel 1.
    let settings = Settings {
        server_context_takeover: true,
        client_context_takeover: true,
        server_max_window_bits: 9,
        client_max_window_bits: 9,
        memory_level: 1,
        level: 6,
        ..Settings::default()
    };
    let a = accept_offer(["permessage-deflate; client_max_window_bits"], &settings).unwrap();
    assert_eq!(
        a.response,
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"
    );
    let mut conn = ConnDeflate::new(a.params, Role::Server, &settings);
    let mut client = Compressor::new(Settings::default().tuning(), 9);
    let mut shared = SharedCompressor::new(settings.tuning());
    let mut pool = InflaterPool::default();
    let mut replies = Vec::with_capacity(similar_messages().len());
    let before = counting::live();
    for m in similar_messages() {
        let mut c = Vec::new();
        client.compress(&m, &mut c).unwrap();
        let mut inflated = Vec::new();
        conn.inflate(&c, true, 1 << 20, &mut pool, &mut inflated)
            .unwrap();
        assert!(inflated == m);
        let mut reply = Vec::new();
        assert_eq!(conn.compress(&inflated, &mut shared, &mut reply), Ok(true));
        drop(inflated);
        replies.push(reply);
    }
    assert!(conn.holds_state());
    let replies_bytes: usize = replies.iter().map(Vec::capacity).sum();
    let held = counting::live() - before - replies_bytes as isize;
    // The replies read back in order by a peer keeping its window.
    let mut peer = Inflater::new(9);
    for (reply, m) in replies.iter().zip(similar_messages()) {
        assert!(inflate_all(&mut peer, reply, 1 << 20).unwrap() == m);
    }
    eprintln!("a connection at 9 bits, memory level 1, both contexts kept: {held} bytes");
    // C zlib: about 9 KiB to deflate and 7.5 KiB to inflate (zlib-rs:
    // 137 KiB and 47 KiB).
    assert!(held < 24 << 10, "{held} bytes held by one connection");
}

#[test]
fn the_replies_of_a_kept_context_read_back_in_order() {
    let settings = Settings {
        server_context_takeover: true,
        ..Settings::default()
    };
    let a = accept_offer(["permessage-deflate"], &settings).unwrap();
    let mut conn = ConnDeflate::new(a.params, Role::Server, &settings);
    let mut shared = SharedCompressor::new(settings.tuning());
    let mut peer = Inflater::with_backend(Backend::ZlibRs, 15);
    for m in similar_messages() {
        let mut reply = Vec::new();
        assert_eq!(conn.compress(&m, &mut shared, &mut reply), Ok(true));
        assert_eq!(conn.shared_key(m.len()), None, "not the shared compressor");
        assert!(inflate_all(&mut peer, &reply, 1 << 20).unwrap() == m);
    }
}

#[test]
fn a_text_check_stops_inflation_at_the_first_bad_piece() {
    // 8 MiB of compressed 'a's after one invalid byte: the check refuses
    // the first piece, so at most one output step (1 MiB) is inflated.
    let mut m = vec![0xff];
    m.extend(std::iter::repeat_n(b'a', 8 << 20));
    let mut compressed = Vec::new();
    c_compressor(15, 8).compress(&m, &mut compressed).unwrap();
    let mut inf = Inflater::with_backend(Backend::CZlib, 15);
    let mut out = Vec::new();
    let mut pieces = 0;
    let r = inf.feed_checked(&compressed, true, 16 << 20, &mut out, |piece| {
        pieces += 1;
        piece[0] != 0xff
    });
    assert_eq!(r, Err(InflateError::InvalidText));
    assert_eq!(pieces, 1);
    assert!(out.len() <= 1 << 20, "{} bytes inflated", out.len());
}

#[test]
fn corrupt_data_in_a_kept_context_is_an_error() {
    let mut c = c_compressor(15, 8);
    let mut inf = Inflater::with_backend(Backend::CZlib, 15);
    let mut first = Vec::new();
    c.compress(&json_like(2000), &mut first).unwrap();
    assert!(inflate_all(&mut inf, &first, 1 << 20).is_ok());
    // A distance far beyond what the window holds, then garbage.
    let err = inflate_all(&mut inf, &[0xff, 0xff, 0xff, 0xff, 0x00], 1 << 20).unwrap_err();
    assert!(matches!(err, InflateError::Corrupt(_)), "{err:?}");
    assert_eq!((err.close_code(true), err.close_code(false)), (1007, 1002));
}

#[test]
fn window_bits_8_is_9_for_c_zlib() {
    // zlib refuses raw deflate with 8 bits (it would silently use 9 for a
    // zlib stream): the negotiation sends such a direction uncompressed,
    // and the codec clamps to 9, which also inflates 8-bit streams.
    assert!(ZDeflate::new(1, 8, 1).is_err());
    assert!(ZDeflate::new(1, 9, 1).is_ok());
    assert!(ZInflate::new(8).is_ok());
    let c = Compressor::with_backend(Backend::CZlib, Settings::default().tuning(), 8);
    assert_eq!(c.window_bits(), 9);
    assert_eq!(Inflater::with_backend(Backend::CZlib, 8).window_bits(), 9);
    assert!(ZDeflate::new(1, 16, 1).is_err());
    assert!(ZDeflate::new(1, 15, 0).is_err());
}

#[test]
fn the_states_may_move_between_threads_as_with_zlib_rs() {
    // A connection's deflate state (and so a client, see the client's
    // tests) may be moved into another thread, as before C zlib.
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Compressor>();
    send_and_sync::<Inflater>();
    send_and_sync::<ConnDeflate>();
    let mut c = c_compressor(15, 8);
    let mut out = Vec::new();
    c.compress(b"before the move", &mut out).unwrap();
    out.extend_from_slice(&SYNC_TAIL);
    let (c, out) = std::thread::spawn(move || {
        c.compress(b"before the move", &mut out).unwrap();
        (c, out)
    })
    .join()
    .unwrap();
    assert_eq!(c.backend(), Backend::CZlib);
    let mut inf = Inflater::with_backend(Backend::CZlib, 15);
    assert_eq!(
        inflate_all(&mut inf, &out, 100).unwrap(),
        b"before the movebefore the move"
    );
}
