//! Fuzzes `wssd::frame`, the frame codec of the daemon and the client.
//!
//! Input: byte 0 picks the mode, role, limits and RSV1 permission, byte 1
//! seeds the read sizes, the rest is the data (see docs/fuzzing.md).
//!
//! - Raw mode: the rest is wire bytes from the peer. They are fed in reads
//!   cut at pseudo-random positions, and again in one read; both must give
//!   the same events and error (split invariance). Every event is checked
//!   against RFC 6455: text valid UTF-8 (unless compressed), sizes within
//!   the limits, control payloads ≤ 125 bytes, valid close codes and
//!   reasons, nothing after a close or an error, and no buffer held by an
//!   idle reader.
//! - Round-trip mode: the rest describes messages, which `FrameWriter`
//!   writes in the peer's role (client frames masked with random keys,
//!   fragmented, with control frames between fragments); the reader must
//!   give back exactly those messages, whatever the read sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wssd::frame::{
    is_valid_close_code, CloseCode, Control, Data, Event, FrameError, FrameReader, FrameWriter,
    Input, Limits, MessageKind, OpCode, Role,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Msg(MessageKind, bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Err(FrameError),
}

/// Read sizes from a small xorshift generator seeded by `seed`.
struct Splits {
    state: u32,
    small: bool,
}

impl Splits {
    fn next(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let n = if self.small {
            self.state % 11
        } else {
            self.state % 4096
        };
        n as usize + 1
    }
}

fn limits(pick: u8) -> Limits {
    let (frame, message) = match pick & 3 {
        0 => (None, None),
        1 => (Some(8), Some(16)),
        2 => (Some(64), Some(200)),
        _ => (Some(1024), Some(1024)),
    };
    Limits {
        max_frame_size: frame,
        max_message_size: message,
    }
}

/// Feeds `wire` in reads of the sizes `splits` gives (all of it in one
/// read when `None`) and checks the reader's invariants on the way.
fn feed(reader: &mut FrameReader, wire: &[u8], mut splits: Option<Splits>, lim: Limits) -> Vec<Got> {
    let mut got = Vec::new();
    let mut rest = wire;
    let mut ended = false;
    let mut buf = Vec::with_capacity(wire.len());
    while !rest.is_empty() {
        let n = splits.as_mut().map_or(rest.len(), |s| s.next().min(rest.len()));
        buf.clear();
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let mut input = Input::new(&mut buf);
        loop {
            match reader.next(&mut input) {
                Ok(Some(event)) => {
                    assert!(!ended, "event after a close or an error");
                    let g = check(event, lim);
                    if matches!(g, Got::Close(_)) {
                        ended = true;
                    }
                    got.push(g);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!ended, "error after a close");
                    got.push(Got::Err(e));
                    return got;
                }
            }
        }
        assert!(input.is_empty(), "a read was not consumed");
        if reader.is_idle() {
            assert_eq!(reader.buffered_capacity(), 0, "an idle reader holds a buffer");
        }
    }
    got
}

/// Checks one event against RFC 6455 and the limits; its owned form.
fn check(event: Event<'_>, lim: Limits) -> Got {
    let max_msg = lim.max_message_size.unwrap_or(usize::MAX);
    match event {
        Event::Message {
            kind,
            compressed,
            payload,
        } => {
            assert!(payload.len() <= max_msg, "message over the limit");
            if kind == MessageKind::Text && !compressed {
                assert!(std::str::from_utf8(&payload).is_ok(), "invalid UTF-8 passed");
            }
            Got::Msg(kind, compressed, payload.into_vec())
        }
        Event::Ping(p) => {
            assert!(p.len() <= 125);
            Got::Ping(p.into_vec())
        }
        Event::Pong(p) => {
            assert!(p.len() <= 125);
            Got::Pong(p.into_vec())
        }
        Event::Close(c) => Got::Close(c.map(|c| {
            let code = u16::from(c.code);
            assert!(is_valid_close_code(code), "close code {code} passed");
            assert!(c.reason.len() <= 123);
            (code, c.reason.to_string())
        })),
    }
}

fn raw(config: u8, seed: u8, wire: &[u8]) {
    let role = if config & 1 == 0 { Role::Server } else { Role::Client };
    let lim = limits(config >> 2);
    let reader = || {
        let mut r = FrameReader::new(role, lim);
        r.set_allow_rsv1(config & 2 != 0);
        r
    };
    let splits = Splits {
        state: u32::from(seed) * 2_654_435_761 | 1,
        small: seed & 1 == 0,
    };
    let split = feed(&mut reader(), wire, Some(splits), lim);
    let whole = feed(&mut reader(), wire, None, lim);
    assert_eq!(split, whole, "the read sizes changed the outcome");
}

fn round_trip(config: u8, seed: u8, data: &[u8]) {
    let peer = if config & 1 == 0 { Role::Client } else { Role::Server };
    let role = if peer == Role::Client { Role::Server } else { Role::Client };
    let writer = FrameWriter::new(peer);
    let mut wire = Vec::new();
    let mut want = Vec::new();
    let mut rest = data;
    // Each message: [kind, len, fragment size, ..payload].
    while let [kind, len, frag, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        match kind % 4 {
            0 | 1 => {
                let (opcode, got_kind, payload) = if kind % 4 == 0 {
                    let text = String::from_utf8_lossy(body).into_owned();
                    (Data::Text, MessageKind::Text, text.into_bytes())
                } else {
                    (Data::Binary, MessageKind::Binary, body.to_vec())
                };
                let frag = usize::from(*frag).max(1);
                let mut parts = payload.chunks(frag).peekable();
                let mut first = true;
                if payload.is_empty() {
                    writer.append(&mut wire, OpCode::Data(opcode), true, b"");
                }
                while let Some(part) = parts.next() {
                    let op = if first { OpCode::Data(opcode) } else { OpCode::Data(Data::Continue) };
                    first = false;
                    let last = parts.peek().is_none();
                    writer.append(&mut wire, op, last, part);
                    if !last && kind & 0x80 != 0 {
                        writer.append(&mut wire, OpCode::Control(Control::Ping), true, &part[..part.len().min(125)]);
                        want.push(Got::Ping(part[..part.len().min(125)].to_vec()));
                    }
                }
                want.push(Got::Msg(got_kind, false, payload));
            }
            2 => {
                let p = &body[..body.len().min(125)];
                writer.append(&mut wire, OpCode::Control(Control::Ping), true, p);
                want.push(Got::Ping(p.to_vec()));
            }
            _ => {
                let p = &body[..body.len().min(125)];
                writer.append(&mut wire, OpCode::Control(Control::Pong), true, p);
                want.push(Got::Pong(p.to_vec()));
            }
        }
    }
    let reason = String::from_utf8_lossy(rest).into_owned();
    writer.append_close(&mut wire, Some((CloseCode::Normal, &reason)));
    let cut = wssd::frame::truncate_reason(&reason).to_string();
    want.push(Got::Close(Some((1000, cut))));
    let splits = Splits {
        state: u32::from(seed) * 2_654_435_761 | 1,
        small: seed & 1 == 0,
    };
    let mut reader = FrameReader::new(role, Limits::default());
    let got = feed(&mut reader, &wire, Some(splits), Limits::default());
    assert_eq!(got, want, "the messages written did not come back");
    assert_eq!(reader.buffered_capacity(), 0);
}

fuzz_target!(|input: &[u8]| {
    let [config, seed, data @ ..] = input else {
        return;
    };
    if config & 0x80 == 0 {
        raw(*config, *seed, data);
    } else {
        round_trip(*config, *seed, data);
    }
});
