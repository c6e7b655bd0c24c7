//! Fuzz target: `RelayMessage::decode`, the frames workers receive from
//! the master. They come from our own processes, but a bug elsewhere (or
//! a corrupted stream) must not crash a worker.
//!
//! Checks that decoding never panics and that whatever decodes encodes
//! back to a frame that decodes to the same message, with a correct
//! length prefix.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wssd::internals::relay::RelayMessage;

fuzz_target!(|body: &[u8]| {
    let Some(message) = RelayMessage::decode(body) else {
        return;
    };
    let mut frame = Vec::new();
    message.encode(&mut frame);
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "length prefix");
    assert!(len <= body.len(), "a re-encoded frame is never longer");
    assert_eq!(RelayMessage::decode(&frame[4..]), Some(message));
});
