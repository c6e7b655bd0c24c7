//! Fuzz target: the WebSocket frame path of an open connection.
//!
//! Drives what `Worker::open` and `Worker::step_open` do: a server-role
//! tungstenite `WebSocket` with the daemon's `WebSocketConfig`, created
//! with `from_partially_read` (bytes that followed the request head),
//! reading until the socket would block, echoing messages like the `echo`
//! handler, and answering a read error with the close code of
//! `wssd::internals::protocol::close_code_for` (1002, 1007, 1009), as `Worker::fail`.
//!
//! Input: byte 0 picks the size limits, whether the peer closes the TCP
//! stream at the end, and how many bytes arrive with the request head;
//! byte 1 picks the sizes of the reads and whether the socket accepts
//! only a few bytes per write; the rest are the client's bytes.
//!
//! Besides "never panics", it checks what goes back to the client: only
//! well-formed, unmasked server frames, control frames of at most 125
//! bytes, valid close codes and UTF-8, nothing after a close frame, and
//! the mapped close code when a read error fails the connection.

#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// (max_message_size, max_frame_size): the daemon's defaults, then
/// smaller limits so that 1009 is reachable with short inputs.
const LIMITS: [(usize, usize); 4] = [(16 << 20, 16 << 20), (1024, 1024), (200, 64), (16, 8)];

/// An in-memory socket: serves the input in reads of planned sizes,
/// `WouldBlock` when the bytes that "arrived" so far are consumed (or
/// end-of-stream once the peer closed), and collects what is written,
/// accepting at most `write_budget` bytes between events when limited.
struct MemStream<'a> {
    input: &'a [u8],
    pos: usize,
    arrived: usize,
    eof: bool,
    output: Vec<u8>,
    write_budget: Option<usize>,
}

impl Read for MemStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.arrived {
            return if self.eof && self.arrived == self.input.len() {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.arrived - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.write_budget {
            Some(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Some(budget) => budget.min(buf.len()),
            None => buf.len(),
        };
        if let Some(budget) = self.write_budget.as_mut() {
            *budget -= n;
        }
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The input split into its control bytes and the client's bytes.
struct Plan<'a> {
    max_message: usize,
    max_frame: usize,
    eof: bool,
    leftover: usize,
    seed: u8,
    limited_writes: bool,
    bytes: &'a [u8],
}

impl<'a> Plan<'a> {
    fn new(data: &'a [u8]) -> Option<Plan<'a>> {
        let (&a, rest) = data.split_first()?;
        let (&b, bytes) = rest.split_first()?;
        let (max_message, max_frame) = LIMITS[usize::from(a & 3)];
        Some(Plan {
            max_message,
            // As Worker::open: the frame limit never exceeds the message limit.
            max_frame: max_frame.min(max_message),
            eof: a & 4 != 0,
            leftover: (usize::from(a >> 3) * 3).min(bytes.len()),
            seed: b,
            limited_writes: b & 0x40 != 0,
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

/// What the harness saw, for the checks on the output.
#[derive(Default)]
struct Outcome {
    /// The close code we failed the connection with, if the connection
    /// was still open (no close frame sent yet) when it failed.
    failed_with: Option<CloseCode>,
}

/// The echo handler: send every data message back (`Worker::send`).
/// Returns false if the connection would be dropped.
fn echo(ws: &mut WebSocket<MemStream<'_>>, message: Message) -> bool {
    match ws.write(message) {
        Ok(()) => true,
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => true,
        Err(WsError::Protocol(ProtocolError::SendAfterClosing)) | Err(WsError::AlreadyClosed) => {
            true
        }
        Err(_) => false,
    }
}

/// `Worker::fail`: answer a read error with its close code, then stop.
fn fail(ws: &mut WebSocket<MemStream<'_>>, error: WsError, outcome: &mut Outcome) {
    let Some(code) = wssd::internals::protocol::close_code_for(&error) else {
        return;
    };
    let open = ws.can_write();
    let reason = error.to_string();
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.chars().take(100).collect::<String>().into(),
    }));
    let _ = ws.flush();
    if open {
        outcome.failed_with = Some(code);
    }
}

/// One readiness event, as `Worker::step_open`: read until the socket
/// would block, dispatch, then flush. Returns false once the connection
/// is finished (closed, failed or dropped).
fn step(ws: &mut WebSocket<MemStream<'_>>, plan: &Plan<'_>, outcome: &mut Outcome) -> bool {
    loop {
        match ws.read() {
            Ok(message) => match message {
                Message::Text(_) | Message::Binary(_) => {
                    assert!(message.len() <= plan.max_message, "message over the limit");
                    if !echo(ws, message) {
                        return false;
                    }
                }
                Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                Message::Close(_) | Message::Frame(_) => {}
            },
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => return false,
            Err(e) => {
                fail(ws, e, outcome);
                return false;
            }
        }
    }
    match ws.flush() {
        Ok(()) => true,
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => true,
        Err(_) => false,
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
/// (tungstenite echoes a peer's 1012 or 1013 in its close reply.)
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Checks everything the server wrote against RFC 6455.
fn check_output(out: &[u8], outcome: &Outcome) {
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
    if let Some(code) = outcome.failed_with {
        let last = frames.last().expect("a close frame after a failure");
        assert!(
            last.opcode == 0x8 && last.payload.len() >= 2,
            "no close code"
        );
        let sent = u16::from_be_bytes([last.payload[0], last.payload[1]]);
        assert_eq!(
            sent,
            u16::from(code),
            "failure answered with the wrong code"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::new(data) else {
        return;
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(65536)
        .max_message_size(Some(plan.max_message))
        .max_frame_size(Some(plan.max_frame));
    let (leftover, rest) = plan.bytes.split_at(plan.leftover);
    let stream = MemStream {
        input: rest,
        pos: 0,
        arrived: 0,
        eof: plan.eof,
        output: Vec::new(),
        write_budget: plan.limited_writes.then_some(0),
    };
    let mut ws =
        WebSocket::from_partially_read(stream, leftover.to_vec(), Role::Server, Some(config));
    let mut outcome = Outcome::default();
    let mut i = 0;
    loop {
        let s = ws.get_mut();
        s.arrived = (s.arrived + plan.arrival(i)).min(s.input.len());
        if let Some(budget) = s.write_budget.as_mut() {
            *budget = 1 + (usize::from(plan.seed) + i) % 97;
        }
        let all_in = s.arrived == s.input.len();
        i += 1;
        if !step(&mut ws, &plan, &mut outcome) || all_in {
            break;
        }
    }
    // The socket drains: whatever was queued reaches the client.
    ws.get_mut().write_budget = None;
    let _ = ws.flush();
    check_output(&ws.get_ref().output, &outcome);
});
