//! Fail-fast UTF-8 checking of incoming text messages, as the bytes arrive.
//!
//! tungstenite checks the UTF-8 of a text message fragment by fragment, but
//! only once a whole frame is in its buffer: a peer that sends the start of
//! a large text frame with invalid UTF-8 in it, and then the rest slowly (or
//! never), is failed late (or never). RFC 6455 section 8.1 asks an endpoint
//! to fail the connection as soon as it sees invalid UTF-8 (Autobahn cases
//! 6.4.3 and 6.4.4).
//!
//! [`TextChecked`] wraps the byte stream under a tungstenite `WebSocket`. It
//! follows the frame headers in the bytes read, unmasks the payloads of text
//! messages and validates them incrementally. Reads are passed through
//! unchanged, so tungstenite still parses every complete frame before the
//! bad one; once invalid UTF-8 has been seen, the *next* read fails (once)
//! with an error for which [`is_invalid_utf8`] is true, and the caller fails
//! the connection with close code 1007.
//!
//! The watcher never reports anything that tungstenite would accept: it
//! stops watching at the first frame that tungstenite itself will reject
//! (reserved bits, unknown opcodes, continuation errors), and only invalid
//! bytes of text messages are reported. The daemon's workers use it (the
//! client reads with `crate::frame`, which checks UTF-8 itself).

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};

/// The error payload of the read that reports invalid UTF-8.
#[derive(Debug)]
struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8 in a text message")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Whether `err` is the one a [`TextChecked`] read returns for invalid UTF-8.
pub(crate) fn is_invalid_utf8(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<InvalidUtf8>())
}

/// A byte stream whose incoming text messages are checked for UTF-8 as
/// they arrive; dereferences to the wrapped stream.
#[derive(Debug)]
pub(crate) struct TextChecked<S> {
    inner: S,
    watch: Watch,
}

impl<S> TextChecked<S> {
    /// Watches frames from the first byte read; `already_read` holds bytes
    /// of frames that were read before (after the upgrade request head).
    pub(crate) fn frames(inner: S, already_read: &[u8]) -> Self {
        let mut watch = Watch::new(Parse::Header);
        watch.feed(already_read);
        TextChecked { inner, watch }
    }

    /// The wrapped stream.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Deref for TextChecked<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

impl<S> DerefMut for TextChecked<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Read> Read for TextChecked<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.watch.invalid {
            // Reported once; the caller closes the connection and may go on
            // reading (and discarding) until the peer closes.
            self.watch.invalid = false;
            self.watch.parse = Parse::Off;
            return Err(io::Error::new(io::ErrorKind::InvalidData, InvalidUtf8));
        }
        let n = self.inner.read(buf)?;
        self.watch.feed(&buf[..n]);
        Ok(n)
    }
}

impl<S: Write> Write for TextChecked<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where the watcher is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    /// Collecting a frame header.
    Header,
    /// In a frame's payload.
    Payload {
        /// Payload bytes still to come.
        left: u64,
        /// Masking key, if the frame is masked.
        mask: Option<[u8; 4]>,
        /// Payload bytes already seen (the mask position).
        seen: u64,
        /// Whether the payload belongs to a text message.
        text: bool,
        /// Whether this frame ends its message.
        fin: bool,
    },
    /// Not watching any more (tungstenite will fail the stream itself).
    Off,
}

/// The frame follower.
#[derive(Debug)]
struct Watch {
    parse: Parse,
    header: [u8; 14],
    header_len: usize,
    /// Inside a fragmented data message (a continuation may follow).
    in_message: bool,
    /// That message is text.
    in_text: bool,
    utf8: Utf8Stream,
    /// Invalid UTF-8 seen and not yet reported.
    invalid: bool,
}

impl Watch {
    fn new(parse: Parse) -> Watch {
        Watch {
            parse,
            header: [0; 14],
            header_len: 0,
            in_message: false,
            in_text: false,
            utf8: Utf8Stream::default(),
            invalid: false,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.parse {
                Parse::Off => return,
                Parse::Header => {
                    let take = self.header_needed().saturating_sub(self.header_len);
                    let take = take.min(data.len()).max(1).min(data.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&data[..take]);
                    self.header_len += take;
                    data = &data[take..];
                    if self.header_len >= 2 && self.header_len == self.header_needed() {
                        self.start_frame();
                    }
                }
                Parse::Payload {
                    left,
                    mask,
                    seen,
                    text,
                    fin,
                } => {
                    let n = (left.min(data.len() as u64)) as usize;
                    if text {
                        self.check_payload(&data[..n], mask, seen);
                        if self.invalid {
                            self.parse = Parse::Off;
                            return;
                        }
                    }
                    data = &data[n..];
                    let left = left - n as u64;
                    if left == 0 {
                        self.end_frame(text, fin);
                    } else {
                        self.parse = Parse::Payload {
                            left,
                            mask,
                            seen: seen + n as u64,
                            text,
                            fin,
                        };
                    }
                }
            }
        }
    }

    /// The length of the frame header being collected, as far as known.
    fn header_needed(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let masked = self.header[1] & 0x80 != 0;
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if masked { 4 } else { 0 }
    }

    /// A frame header is complete: decide what its payload is.
    fn start_frame(&mut self) {
        let h = &self.header;
        let fin = h[0] & 0x80 != 0;
        let rsv = h[0] & 0x70;
        let opcode = h[0] & 0x0f;
        let ext = self.header_len - 2 - if h[1] & 0x80 != 0 { 4 } else { 0 };
        let len = match ext {
            0 => u64::from(h[1] & 0x7f),
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            _ => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
        };
        let mask = (h[1] & 0x80 != 0).then(|| {
            let k = 2 + ext;
            [h[k], h[k + 1], h[k + 2], h[k + 3]]
        });
        self.header_len = 0;
        if rsv != 0 {
            // tungstenite fails on reserved bits (no extensions).
            self.parse = Parse::Off;
            return;
        }
        let text = match opcode {
            // Control frames: skipped; they may come between fragments.
            0x8..=0xa => false,
            0x0 if self.in_message => self.in_text,
            0x1 | 0x2 if !self.in_message => {
                self.in_message = true;
                self.in_text = opcode == 0x1;
                self.utf8 = Utf8Stream::default();
                self.in_text
            }
            // An unexpected continuation, a new message inside another one,
            // a reserved opcode: tungstenite fails the connection itself.
            _ => {
                self.parse = Parse::Off;
                return;
            }
        };
        let fin = fin && opcode < 0x8;
        if len == 0 {
            self.end_frame(text, fin);
        } else {
            self.parse = Parse::Payload {
                left: len,
                mask,
                seen: 0,
                text,
                fin,
            };
        }
    }

    /// A frame's payload is complete.
    fn end_frame(&mut self, text: bool, fin: bool) {
        self.parse = Parse::Header;
        if fin {
            if text && !self.utf8.complete() {
                // The message ends inside a character.
                self.invalid = true;
                self.parse = Parse::Off;
            }
            self.in_message = false;
            self.in_text = false;
        }
    }

    /// Unmasks and validates payload bytes; `seen` bytes of the frame's
    /// payload came before them.
    fn check_payload(&mut self, data: &[u8], mask: Option<[u8; 4]>, seen: u64) {
        let Some(key) = mask else {
            self.invalid |= !self.utf8.feed(data);
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut pos = seen;
        for part in data.chunks(chunk.len()) {
            for (i, b) in part.iter().enumerate() {
                chunk[i] = b ^ key[((pos + i as u64) % 4) as usize];
            }
            pos += part.len() as u64;
            if !self.utf8.feed(&chunk[..part.len()]) {
                self.invalid = true;
                return;
            }
        }
    }
}

/// An incremental UTF-8 validator (RFC 3629: no surrogates, no overlong
/// forms, nothing above U+10FFFF).
#[derive(Debug, Clone, Copy)]
struct Utf8Stream {
    /// Continuation bytes still needed by the current character.
    need: u8,
    /// Bounds of the next continuation byte.
    lo: u8,
    hi: u8,
}

impl Default for Utf8Stream {
    fn default() -> Self {
        Utf8Stream {
            need: 0,
            lo: 0x80,
            hi: 0xbf,
        }
    }
}

impl Utf8Stream {
    /// Feeds bytes; `false` once they cannot be UTF-8, whatever follows.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        while self.need > 0 {
            let Some((&b, rest)) = data.split_first() else {
                return true;
            };
            if !self.step(b) {
                return false;
            }
            data = rest;
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_some() => false,
            Err(e) => data[e.valid_up_to()..].iter().all(|&b| self.step(b)),
        }
    }

    /// One byte through the state machine.
    fn step(&mut self, b: u8) -> bool {
        if self.need > 0 {
            if b < self.lo || b > self.hi {
                return false;
            }
            self.need -= 1;
            self.lo = 0x80;
            self.hi = 0xbf;
            return true;
        }
        let (need, lo, hi) = match b {
            0x00..=0x7f => return true,
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => (2, 0x80, 0xbf),
            0xed => (2, 0x80, 0x9f),
            0xf0 => (3, 0x90, 0xbf),
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f),
            _ => return false,
        };
        self.need = need;
        self.lo = lo;
        self.hi = hi;
        true
    }

    /// Whether the bytes so far end on a character boundary.
    fn complete(&self) -> bool {
        self.need == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n < 65536 => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// Feeds `bytes` in pieces of `step` bytes; whether invalid UTF-8 was seen.
    fn watch(bytes: &[u8], step: usize) -> bool {
        let mut w = Watch::new(Parse::Header);
        for piece in bytes.chunks(step) {
            w.feed(piece);
        }
        w.invalid
    }

    const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    #[test]
    fn validator_agrees_with_std() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xf0\x8f\xbf\xbf",
            b"\xc0\xaf",
            b"\xef\xbf\xbf",
            b"\xf4\x8f\xbf\xbf",
            b"\xed\x9f\xbf",
            b"\xe0\x9f\xbf",
            b"\x80",
            b"\xfe",
        ];
        for s in samples {
            let valid = std::str::from_utf8(s).is_ok();
            for step in 1..=s.len() {
                let mut u = Utf8Stream::default();
                let ok = s.chunks(step).all(|c| u.feed(c)) && u.complete();
                assert_eq!(ok, valid, "{s:?} in pieces of {step}");
            }
        }
    }

    #[test]
    fn invalid_bytes_are_seen_before_the_frame_ends() {
        let mut payload = b"hello".to_vec();
        payload.extend_from_slice(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80");
        payload.extend_from_slice(&[b'a'; 1000]);
        let bytes = frame(true, 1, &payload, KEY);
        // The header and the bytes up to the bad sequence are enough.
        assert!(watch(&bytes[..8 + 5 + 14], 1));
        assert!(!watch(&bytes[..8 + 5 + 10], 1));
    }

    #[test]
    fn valid_traffic_is_never_reported() {
        let mut bytes = frame(false, 1, "κό".as_bytes(), KEY);
        bytes.extend(frame(true, 9, b"\xff\xfe", KEY)); // ping between fragments
        bytes.extend(frame(true, 0, "σμε".as_bytes(), KEY));
        bytes.extend(frame(true, 2, b"\xff\xfe\x00", KEY)); // binary
        bytes.extend(frame(true, 1, &[b'x'; 70000], KEY));
        bytes.extend(frame(true, 1, b"", KEY));
        bytes.extend(frame(true, 10, b"\xff", None));
        for step in [1, 2, 3, 7, 4096, bytes.len()] {
            assert!(!watch(&bytes, step), "pieces of {step}");
        }
    }

    #[test]
    fn a_character_split_across_fragments_is_fine_but_not_at_the_end() {
        let e = "€".as_bytes();
        let mut bytes = frame(false, 1, &e[..1], None);
        bytes.extend(frame(false, 0, &e[1..2], None));
        bytes.extend(frame(true, 0, &e[2..], None));
        assert!(!watch(&bytes, 1));
        let mut cut = frame(false, 1, &e[..1], None);
        cut.extend(frame(true, 0, &e[1..2], None));
        assert!(watch(&cut, 1));
    }

    #[test]
    fn protocol_errors_stop_the_watch() {
        // Continuation without a message, then something that looks bad:
        let mut bytes = frame(true, 0, b"x", None);
        bytes.extend(frame(true, 1, b"\xff", None));
        assert!(!watch(&bytes, 1));
        // Reserved bits.
        let mut bytes = frame(true, 1, b"\xff", None);
        bytes[0] |= 0x40;
        assert!(!watch(&bytes, 1));
    }
}
