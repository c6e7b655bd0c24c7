//! Fuzz target: the WebSocket frame path of an open connection, through
//! the daemon's own code: a real worker `Session` (frame reader, read
//! budget, pongs, close handshake, send path, fail, linger) over a Unix
//! socket pair, driven as the worker's loop drives it, with the built-in
//! `echo` handler (`wssd::fuzzing::Harness`, built with the `fuzzing`
//! feature).
//!
//! Input: byte 0 picks the size limits, whether the client shuts down its
//! sending half at the end, and how many bytes arrive with the request
//! head; byte 1 picks the sizes of the reads, whether the route is the
//! built-in `echo` (answered while reading) and whether the sockets have
//! tight send buffers; the rest are the client's bytes.
//!
//! Besides "never panics", it checks what goes back to the client: only
//! well-formed, unmasked server frames, control frames of at most 125
//! bytes, valid close codes and UTF-8, nothing after a close frame, and
//! the reader's close code when the connection is failed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wssd::fuzzing::{Buffers, Harness};

/// (max_message_size, max_frame_size): the daemon's defaults, then
/// smaller limits so that 1009 is reachable with short inputs.
const LIMITS: [(usize, usize); 4] = [(16 << 20, 16 << 20), (1024, 1024), (200, 64), (16, 8)];

/// The input split into its control bytes and the client's bytes.
struct Plan<'a> {
    max_message: usize,
    max_frame: usize,
    leftover: usize,
    eof: bool,
    buffers: Buffers,
    /// The route of the built-in `echo` (answered while reading) instead
    /// of a handler's route running `Echo`.
    builtin_echo: bool,
    seed: u8,
    bytes: &'a [u8],
}

impl<'a> Plan<'a> {
    fn new(data: &'a [u8]) -> Option<Plan<'a>> {
        let (&a, rest) = data.split_first()?;
        let (&b, bytes) = rest.split_first()?;
        let (max_message, max_frame) = LIMITS[usize::from(a & 3)];
        Some(Plan {
            max_message,
            max_frame,
            leftover: (usize::from(a >> 3) * 3).min(bytes.len()),
            eof: a & 4 != 0,
            buffers: if b & 0x40 != 0 {
                Buffers::Tight
            } else {
                Buffers::Kernel
            },
            builtin_echo: b & 0x20 != 0,
            seed: b,
            bytes,
        })
    }

    /// How many more bytes arrive at event `i`.
    fn arrival(&self, i: usize) -> usize {
        let x = usize::from(self.seed)
            .wrapping_mul(131)
            .wrapping_add(i.wrapping_mul(29));
        if self.seed & 0x80 != 0 {
            1 + x % 4096
        } else {
            1 + x % 11
        }
    }
}

/// One frame as the client receives it.
struct OutFrame<'a> {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    payload: &'a [u8],
}

/// Splits the server's output into frames; panics on a truncated one.
fn parse_output(mut out: &[u8]) -> Vec<OutFrame<'_>> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        assert!(out.len() >= 2, "truncated frame header");
        let (b0, b1) = (out[0], out[1]);
        let masked = b1 & 0x80 != 0;
        let extra = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let at = 2 + extra + if masked { 4 } else { 0 };
        assert!(out.len() >= at, "truncated frame header");
        let len = match extra {
            2 => u64::from(u16::from_be_bytes([out[2], out[3]])),
            8 => u64::from_be_bytes(out[2..10].try_into().unwrap()),
            _ => u64::from(b1 & 0x7f),
        };
        let len = usize::try_from(len).unwrap();
        assert!(out.len() >= at + len, "truncated frame payload");
        frames.push(OutFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: b0 & 0x0f,
            masked,
            payload: &out[at..at + len],
        });
        out = &out[at + len..];
    }
    frames
}

/// Close codes an endpoint may send: those of RFC 6455 §7.4.1, the later
/// IANA registrations 1012-1014, and the 3000-4999 application ranges.
/// (The close reply echoes the peer's code.)
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Checks everything the server wrote against RFC 6455.
fn check_output(out: &[u8], failed_with: Option<u16>) {
    let frames = parse_output(out);
    let mut closed = false;
    for f in &frames {
        assert!(!closed, "a frame after the close frame");
        assert!(!f.masked, "a server frame must not be masked");
        assert_eq!(f.rsv, 0, "reserved bits set");
        match f.opcode {
            0x1 => {
                assert!(f.fin);
                assert!(
                    std::str::from_utf8(f.payload).is_ok(),
                    "invalid UTF-8 echoed"
                );
            }
            0x2 => assert!(f.fin),
            0x8 => {
                assert!(f.fin && f.payload.len() <= 125, "bad close frame");
                assert_ne!(f.payload.len(), 1, "a close payload of one byte");
                if f.payload.len() >= 2 {
                    let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                    assert!(sendable(code), "close code {code} cannot be sent");
                    assert!(std::str::from_utf8(&f.payload[2..]).is_ok());
                }
                closed = true;
            }
            0x9 | 0xA => assert!(f.fin && f.payload.len() <= 125, "bad ping/pong"),
            op => panic!("server sent opcode {op:#x}"),
        }
    }
    if let Some(code) = failed_with {
        let last = frames.last().expect("a close frame after a failure");
        assert!(
            last.opcode == 0x8 && last.payload.len() >= 2,
            "no close code"
        );
        let sent = u16::from_be_bytes([last.payload[0], last.payload[1]]);
        assert_eq!(sent, code, "failure answered with the wrong code");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::new(data) else {
        return;
    };
    let (leftover, rest) = plan.bytes.split_at(plan.leftover);
    let Ok(mut conn) = Harness::new(
        plan.max_message,
        plan.max_frame,
        leftover,
        plan.buffers,
        plan.builtin_echo,
    ) else {
        return; // out of file descriptors: not a finding
    };
    let mut at = 0;
    let mut i = 0;
    while at < rest.len() {
        let n = plan.arrival(i).min(rest.len() - at);
        i += 1;
        if !conn.feed(&rest[at..at + n]) {
            break;
        }
        at += n;
    }
    let (output, failed_with) = conn.finish(plan.eof);
    check_output(&output, failed_with);
});
