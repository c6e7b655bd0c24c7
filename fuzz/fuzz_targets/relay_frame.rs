//! Fuzz target: the relay's frame bodies, as workers and the master
//! decode them: a broadcast (`RelayMessage`), a broadcast as a worker
//! reads it, counted or not (`Incoming`, for `POST /publish`), and a
//! worker's delivery report (`Delivered`). They come from our own
//! processes, but a bug elsewhere (or a corrupted stream) must not crash
//! a worker or the master.
//!
//! Checks that decoding never panics and that whatever decodes encodes
//! back to a frame that decodes to the same value, with a correct length
//! prefix and never longer than the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wssd::internals::relay::{Delivered, Incoming, RelayMessage};

/// The frame's body after checking its length prefix.
fn body_of(frame: &[u8], input: &[u8]) -> Vec<u8> {
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "length prefix");
    assert!(len <= input.len(), "a re-encoded frame is never longer");
    frame[4..].to_vec()
}

fuzz_target!(|body: &[u8]| {
    if let Some(message) = RelayMessage::decode(body) {
        let mut frame = Vec::new();
        message.encode(&mut frame);
        assert_eq!(RelayMessage::decode(&body_of(&frame, body)), Some(message));
    }
    if let Some(incoming) = Incoming::decode(body) {
        let mut frame = Vec::new();
        match incoming.request {
            Some(request) => incoming.message.encode_counted(request, &mut frame),
            None => incoming.message.encode(&mut frame),
        }
        assert_eq!(Incoming::decode(&body_of(&frame, body)), Some(incoming));
    }
    if let Some(report) = Delivered::decode(body) {
        let mut frame = Vec::new();
        report.encode(&mut frame);
        let again = body_of(&frame, body);
        assert_eq!(again.len(), body.len(), "a report has one length");
        assert_eq!(Delivered::decode(&again), Some(report));
    }
});
