//! Fuzz target: permessage-deflate from a hostile peer. The input is
//! split at its first NUL: before it, `Sec-WebSocket-Extensions` lines
//! (offered to the server, and answered to the client); after it, the
//! payload of a compressed message, inflated in two pieces through a
//! connection's state with a 64 KiB limit, and compressed and inflated
//! back. Nothing may panic, an inflated message never exceeds its
//! limit, and what is compressed comes back unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wssd::internals::deflate::{
    accept_offer, ClientOffer, ConnDeflate, InflateError, InflaterPool, Negotiated, Role,
    Settings, SharedCompressor,
};

const LIMIT: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(head);
    let lines: Vec<&str> = text.split('\n').collect();
    let settings = Settings::default();
    let accepted = accept_offer(lines.iter().copied(), &settings);
    if let Some(a) = &accepted {
        assert!(a.response.starts_with("permessage-deflate"));
    }
    let _ = ClientOffer::default().check_answer(lines.iter().copied());

    let params = accepted.map(|a| a.params).unwrap_or(Negotiated {
        server_no_context_takeover: true,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 9,
    });
    let mut conn = ConnDeflate::new(params, Role::Server, &settings);
    let mut pool = InflaterPool::default();
    let split = body.first().map_or(0, |&b| usize::from(b)).min(body.len());
    let mut out = Vec::new();
    let first = conn.inflate(&body[..split], false, LIMIT, &mut pool, &mut out);
    let result = first.and_then(|_| conn.inflate(&body[split..], true, LIMIT, &mut pool, &mut out));
    match result {
        Ok(_) => assert!(out.len() <= LIMIT),
        Err(InflateError::TooBig { .. }) => assert!(out.len() <= LIMIT + 1),
        Err(_) => {}
    }

    let mut shared = SharedCompressor::new(settings.tuning());
    let mut compressed = Vec::new();
    if conn.compress(body, &mut shared, &mut compressed).unwrap_or(false) {
        let mut back = Vec::new();
        let mut reader = ConnDeflate::new(params, Role::Client, &settings);
        reader
            .inflate(&compressed, true, usize::MAX, &mut pool, &mut back)
            .expect("our own output inflates");
        assert!(back == body);
    }
});
