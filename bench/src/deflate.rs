//! permessage-deflate (RFC 7692) on the client side: the offer, the
//! validation of the server's answer (section 7.1), and the per-connection
//! compression and decompression of messages with `flate2` (zlib-rs
//! backend, which supports window sizes).
//!
//! Deflate state is large (a 15-bit compressor is a few hundred KiB), so a
//! direction without context takeover borrows one state per worker
//! ([`Spare`]) and resets it after each message; only a direction with
//! context takeover keeps state in the connection. Connections that
//! exchange a single message (idle and handshake modes) use the shared
//! state both ways: for a first message a fresh state is what a
//! per-connection one would be, and no per-connection allocation is made
//! (allocating and freeing a few hundred KiB per connection among
//! long-lived buffers made glibc's heap grow to ~220 KiB per connection).

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The offer, as a browser makes it.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The extension's name.
const NAME: &str = "permessage-deflate";
/// What a sync flush ends with, stripped on send and appended on receive
/// (RFC 7692 section 7.2.1 and 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Window size when the answer names none.
const MAX_BITS: u8 = 15;

/// What the server's answer accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client (we) must reset its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window (our inflate window), 8 to 15.
    pub server_max_window_bits: u8,
    /// Our LZ77 window, 8 to 15.
    pub client_max_window_bits: u8,
}

/// Why the server's `Sec-WebSocket-Extensions` answer is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtError {
    /// An extension that was not offered.
    NotOffered(String),
    /// `permessage-deflate` accepted more than once.
    Repeated,
    /// An unknown, duplicated or malformed parameter.
    BadParam(String),
    /// `client_max_window_bits=8`: zlib's raw deflate cannot keep to a
    /// 256-byte window (it silently uses 512 bytes).
    Window8,
}

impl fmt::Display for ExtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtError::NotOffered(e) => write!(f, "server accepted extension {e:?}, not offered"),
            ExtError::Repeated => write!(f, "server accepted permessage-deflate twice"),
            ExtError::BadParam(p) => {
                write!(f, "server's permessage-deflate answer has a bad parameter {p:?} (RFC 7692 section 7.1)")
            }
            ExtError::Window8 => write!(
                f,
                "server asks for client_max_window_bits=8, which zlib's raw deflate cannot honour"
            ),
        }
    }
}

/// Validates the values of the answer's `Sec-WebSocket-Extensions`
/// headers against [`OFFER`]: `Ok(None)` when none was accepted.
pub fn parse_answer(values: &[String]) -> Result<Option<Params>, ExtError> {
    let mut found = None;
    for ext in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let mut parts = ext.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        if !name.eq_ignore_ascii_case(NAME) {
            return Err(ExtError::NotOffered(name.to_string()));
        }
        if found.is_some() {
            return Err(ExtError::Repeated);
        }
        found = Some(parse_params(parts)?);
    }
    Ok(found)
}

/// Parses the parameters of one accepted `permessage-deflate`.
fn parse_params<'a>(parts: impl Iterator<Item = &'a str>) -> Result<Params, ExtError> {
    let mut p = Params {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: MAX_BITS,
        client_max_window_bits: MAX_BITS,
    };
    let mut seen: Vec<String> = Vec::new();
    for part in parts {
        let bad = || ExtError::BadParam(part.to_string());
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(bad());
        }
        match (key.as_str(), value) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                p.server_max_window_bits = window_bits(v).ok_or_else(bad)?;
            }
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits = window_bits(v).ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
        seen.push(key);
    }
    if p.client_max_window_bits == 8 {
        return Err(ExtError::Window8);
    }
    Ok(p)
}

/// A window-bits value: 8 to 15, digits only, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

impl fmt::Display for Params {
    /// The answer in canonical form, for the report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAME}")?;
        if self.server_no_context_takeover {
            write!(f, "; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            write!(f, "; client_no_context_takeover")?;
        }
        write!(
            f,
            "; server_max_window_bits={}; client_max_window_bits={}",
            self.server_max_window_bits, self.client_max_window_bits
        )
    }
}

/// A deflate failure: the server's data is not valid deflate, or a
/// message inflates beyond the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeflateError {
    /// zlib refused the data (or our own compressor failed).
    Data(String),
    /// The inflated message would exceed this many bytes.
    TooLarge(usize),
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateError::Data(e) => write!(f, "invalid deflate data: {e}"),
            DeflateError::TooLarge(n) => write!(f, "message inflates beyond {n} bytes"),
        }
    }
}

/// Deflate state shared by the connections of one worker for the
/// directions without context takeover (reset after every message).
#[derive(Default)]
pub struct Spare {
    tx: Option<(u8, Compress)>,
    rx: Option<(u8, Decompress)>,
}

/// One connection's negotiated compression.
pub struct Codec {
    /// What the server accepted.
    pub params: Params,
    /// One message each way: use the worker's shared state both ways.
    single: bool,
    /// Our compressor, kept between messages (context takeover only).
    tx: Option<Box<Compress>>,
    /// Our decompressor, kept between messages (server context takeover).
    rx: Option<Box<Decompress>>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// A new raw-deflate compressor with a `bits` window (9 to 15).
fn new_compress(bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::default(), false, bits.clamp(9, 15))
}

/// A new raw-deflate decompressor; a larger window than the server's
/// (8 is raised to zlib's minimum, 9) accepts everything the server sends.
fn new_decompress(bits: u8) -> Decompress {
    Decompress::new_with_window_bits(false, bits.clamp(9, 15))
}

impl Codec {
    /// A codec for what the server accepted; state is made on first use.
    /// `single`: the connection sends and receives one data message only.
    pub fn new(params: Params, single: bool) -> Self {
        Codec {
            params,
            single,
            tx: None,
            rx: None,
        }
    }

    /// Drops the kept deflate state (an idle connection sends and receives
    /// no more data messages); any later message starts a fresh state,
    /// which stays valid deflate for the peer.
    pub fn release(&mut self) {
        self.tx = None;
        self.rx = None;
    }

    /// Compresses one message into `out` (cleared first), without the
    /// trailing `00 00 ff ff`.
    pub fn compress(
        &mut self,
        spare: &mut Spare,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        out.clear();
        let bits = self.params.client_max_window_bits;
        if self.params.client_no_context_takeover || self.single {
            let c = match &mut spare.tx {
                Some((b, c)) if *b == bits => c,
                slot => &mut slot.insert((bits, new_compress(bits))).1,
            };
            let result = deflate_all(c, input, out);
            c.reset();
            result
        } else {
            let c = self.tx.get_or_insert_with(|| Box::new(new_compress(bits)));
            deflate_all(c, input, out)
        }
    }

    /// Inflates one message (the payloads of its frames, joined) into
    /// `out` (cleared first), failing once it would exceed `limit` bytes.
    pub fn inflate(
        &mut self,
        spare: &mut Spare,
        input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        out.clear();
        let bits = self.params.server_max_window_bits;
        if self.params.server_no_context_takeover || self.single {
            let d = match &mut spare.rx {
                Some((b, d)) if *b == bits => d,
                slot => &mut slot.insert((bits, new_decompress(bits))).1,
            };
            let result = inflate_all(d, input, limit, out);
            d.reset(false);
            result
        } else {
            let d = self
                .rx
                .get_or_insert_with(|| Box::new(new_decompress(bits)));
            inflate_all(d, input, limit, out)
        }
    }
}

/// Compresses `input` with a sync flush and strips the flush's tail.
fn deflate_all(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
    let start = c.total_in();
    loop {
        out.reserve(input.len() / 2 + 64);
        let consumed = usize::try_from(c.total_in() - start).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        c.compress_vec(rest, out, FlushCompress::Sync)
            .map_err(|e| DeflateError::Data(e.to_string()))?;
        let done = c.total_in() - start == input.len() as u64;
        // Output space left over means the flush is complete.
        if done && out.len() < out.capacity() {
            break;
        }
    }
    if !out.ends_with(&TAIL) {
        return Err(DeflateError::Data("sync flush without its tail".into()));
    }
    out.truncate(out.len() - TAIL.len());
    Ok(())
}

/// Inflates `input` followed by the tail, within `limit` output bytes.
fn inflate_all(
    d: &mut Decompress,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    for part in [input, &TAIL[..]] {
        let start = d.total_in();
        loop {
            if out.len() > limit {
                return Err(DeflateError::TooLarge(limit));
            }
            // Never more room than one byte past the limit.
            let room = (limit + 1 - out.len()).min(64 * 1024);
            out.reserve(room);
            let before_cap = out.capacity();
            let consumed = usize::try_from(d.total_in() - start).unwrap_or(usize::MAX);
            let rest = part.get(consumed..).unwrap_or_default();
            let status = d
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|e| DeflateError::Data(e.to_string()))?;
            if out.len() > limit {
                return Err(DeflateError::TooLarge(limit));
            }
            let done = d.total_in() - start == part.len() as u64;
            match status {
                Status::StreamEnd => {
                    return Err(DeflateError::Data("final block inside a message".into()))
                }
                _ if done && out.len() < before_cap => break,
                Status::BufError if done => break,
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(s: &str) -> Result<Option<Params>, ExtError> {
        parse_answer(&[s.to_string()])
    }

    #[test]
    fn answers_are_validated() {
        assert_eq!(parse_answer(&[]), Ok(None));
        let p = answer("permessage-deflate").unwrap().unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (15, 15)
        );
        let p =
            answer("permessage-deflate; client_no_context_takeover; server_no_context_takeover")
                .unwrap()
                .unwrap();
        assert!(p.client_no_context_takeover && p.server_no_context_takeover);
        let p =
            answer("permessage-deflate; server_max_window_bits=12; client_max_window_bits=\"10\"")
                .unwrap()
                .unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (12, 10)
        );
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; x_param",
        ] {
            assert!(matches!(answer(bad), Err(ExtError::BadParam(_))), "{bad}");
        }
        assert_eq!(
            answer("permessage-deflate, permessage-deflate"),
            Err(ExtError::Repeated)
        );
        assert!(matches!(answer("x-other"), Err(ExtError::NotOffered(_))));
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=8"),
            Err(ExtError::Window8)
        );
    }

    #[test]
    fn compress_inflate_roundtrip_with_and_without_takeover() {
        let msg: Vec<u8> = b"{\"user\":\"alice\",\"text\":\"hello hello\"}"
            .iter()
            .copied()
            .cycle()
            .take(20_000)
            .collect();
        for no_takeover in [false, true] {
            let params = Params {
                server_no_context_takeover: no_takeover,
                client_no_context_takeover: no_takeover,
                server_max_window_bits: 10,
                client_max_window_bits: 10,
            };
            let (mut a, mut b) = (Codec::new(params, false), Codec::new(params, false));
            let (mut sa, mut sb) = (Spare::default(), Spare::default());
            let (mut packed, mut plain) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                a.compress(&mut sa, &msg, &mut packed).unwrap();
                assert!(packed.len() < msg.len() / 10);
                b.inflate(&mut sb, &packed, msg.len(), &mut plain).unwrap();
                assert_eq!(plain, msg);
            }
            assert_eq!(
                b.inflate(&mut sb, &packed, msg.len() - 1, &mut plain),
                Err(DeflateError::TooLarge(msg.len() - 1))
            );
        }
    }
}
