//! Message compression and decompression for RFC 7692 over zlib-rs or
//! C zlib ([`Backend`]): raw DEFLATE, a sync flush per message with the trailing
//! `00 00 ff ff` removed (§7.2.1), and inflation with those four bytes
//! appended again (§7.2.2), bounded by the message size limit.
//!
//! [`Compressor`] is one deflate state; [`SharedCompressor`] is the
//! worker's set of them for connections whose server keeps no context
//! (reset after every message, so one state serves them all);
//! [`Inflater`] is one inflate state fed a message's compressed bytes as
//! they arrive. States a connection keeps between messages (context
//! takeover) run on C zlib, whose memory follows the window bits and
//! `memLevel`; the worker's shared ones on zlib-rs, which is faster.

use std::fmt;

use zlib_rs::{DeflateConfig, DeflateFlush, InflateFlush, Status};

use super::negotiate::{MAX_WINDOW_BITS, MIN_CODEC_WINDOW_BITS};
use super::zlib::{ZDeflate, ZInflate};

/// The empty stored block a sync flush ends with; RFC 7692 removes it
/// from every compressed message and the receiver puts it back.
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest output step while inflating: one read's worth.
const MIN_INFLATE_STEP: usize = 4 << 10;
/// Largest output step (zero-filled before inflate writes it), so a small
/// message never pays for a large one's buffer.
const MAX_INFLATE_STEP: usize = 1 << 20;

/// Why a compressed message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message is larger than the limit: close with 1009.
    TooBig {
        /// The limit in bytes (`max_message_size`).
        limit: usize,
    },
    /// The compressed bytes are not a valid DEFLATE stream.
    Corrupt(&'static str),
    /// The caller's check refused inflated bytes (invalid UTF-8 in text).
    InvalidText,
}

impl InflateError {
    /// The close code to fail the connection with. RFC 7692 §8 only says
    /// to fail the connection on data that does not inflate; wssd uses
    /// 1007 for a text message (its bytes are not the text they claim
    /// to be, RFC 6455 §7.4.1) and 1002 for a binary one (the sender broke
    /// the extension's framing), and 1009 for a message over the limit.
    pub fn close_code(&self, text: bool) -> u16 {
        match self {
            InflateError::TooBig { .. } => 1009,
            InflateError::Corrupt(_) if text => 1007,
            InflateError::Corrupt(_) => 1002,
            InflateError::InvalidText => 1007,
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooBig { limit } => write!(
                f,
                "compressed message inflates to more than {limit} bytes (raise max_message_size to accept it)"
            ),
            InflateError::Corrupt(why) => write!(f, "invalid compressed data: {why}"),
            InflateError::InvalidText => f.write_str("invalid UTF-8 in an inflated text message"),
        }
    }
}

impl std::error::Error for InflateError {}

/// zlib-rs refused to compress: only a bug (a bad state) can cause it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressError(pub &'static str);

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deflate failed ({}); send uncompressed and report this as a bug",
            self.0
        )
    }
}

impl std::error::Error for CompressError {}

/// The compressor's knobs, validated by the configuration (1..=9 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateTuning {
    /// zlib compression level, 1 (fastest) to 9 (smallest).
    pub level: u8,
    /// zlib `memLevel`, 1 to 9: the hash table and literal buffer sizes
    /// (memory `≈ 2^(memLevel+9)` bytes beside the window).
    pub memory_level: u8,
}

/// Which DEFLATE implementation a [`Compressor`] or [`Inflater`] runs on.
/// Both read each other's output; they differ in speed and memory
/// (docs/compression.md measures both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// zlib-rs: the faster one (level 1 is its `deflate_quick`), but a
    /// deflate state holds a fixed 128 KiB hash table whatever
    /// `memLevel` (134 KiB at the smallest settings) and an inflate state
    /// a full 32 KiB window whatever the window bits. Used for the
    /// worker's shared compressor and pooled inflaters, one per window
    /// size.
    ZlibRs,
    /// C zlib (the system's, through `libz-sys`): a deflate state of
    /// about `2^(window+2) + 2^(memLevel+9)` bytes (9 KiB at 9 bits and
    /// memLevel 1), an inflate state of 7 KiB plus a `2^window` window.
    /// Used for the states a connection keeps (context takeover).
    CZlib,
}

enum DeflateState {
    ZlibRs(zlib_rs::Deflate),
    CZlib(ZDeflate),
}

/// One raw-deflate state with a fixed window.
pub struct Compressor {
    deflate: DeflateState,
    window_bits: u8,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("backend", &self.backend())
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A zlib-rs compressor (see [`with_backend`](Self::with_backend)).
    pub fn new(tuning: DeflateTuning, window_bits: u8) -> Self {
        Compressor::with_backend(Backend::ZlibRs, tuning, window_bits)
    }

    /// A compressor on `backend` with a `window_bits` window (clamped to
    /// 9..=15: zlib cannot deflate raw streams with 8; see `negotiate`).
    /// zlib-rs allocates the whole deflate state here (about
    /// 2^(window+1) + 2^(memLevel+9) bytes beside its 128 KiB hash
    /// table), C zlib about 2^(window+2) + 2^(memLevel+9) bytes.
    pub fn with_backend(backend: Backend, tuning: DeflateTuning, window_bits: u8) -> Self {
        let window_bits = window_bits.clamp(MIN_CODEC_WINDOW_BITS, MAX_WINDOW_BITS);
        let level = tuning.level.clamp(1, 9);
        let mem_level = tuning.memory_level.clamp(1, 9);
        let deflate = match backend {
            Backend::ZlibRs => {
                DeflateState::ZlibRs(zlib_rs::Deflate::new_with_config(DeflateConfig {
                    level: i32::from(level),
                    window_bits: -i32::from(window_bits),
                    mem_level: i32::from(mem_level),
                    ..DeflateConfig::default()
                }))
            }
            // The parameters are in zlib's ranges (clamped above) and an
            // allocation failure aborts (zlib::zalloc), so zlib cannot
            // refuse them unless the linked library is not zlib 1.x.
            Backend::CZlib => DeflateState::CZlib(
                ZDeflate::new(level, window_bits, mem_level)
                    .unwrap_or_else(|why| panic!("C zlib's deflateInit2 failed: {why}")),
            ),
        };
        Compressor {
            deflate,
            window_bits,
        }
    }

    /// The window this compressor uses.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// The implementation it runs on.
    pub fn backend(&self) -> Backend {
        match self.deflate {
            DeflateState::ZlibRs(_) => Backend::ZlibRs,
            DeflateState::CZlib(_) => Backend::CZlib,
        }
    }

    /// One deflate call with a sync flush: `(read, written)`.
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), CompressError> {
        match &mut self.deflate {
            DeflateState::ZlibRs(deflate) => {
                let (in0, out0) = (deflate.total_in(), deflate.total_out());
                deflate
                    .compress(input, out, DeflateFlush::SyncFlush)
                    .map_err(|e| CompressError(e.as_str()))?;
                Ok((
                    (deflate.total_in() - in0) as usize,
                    (deflate.total_out() - out0) as usize,
                ))
            }
            DeflateState::CZlib(deflate) => deflate.sync_flush(input, out).map_err(CompressError),
        }
    }

    /// Compresses one whole message and appends its RFC 7692 payload
    /// (sync flush, without the trailing `00 00 ff ff`) to `out`. The
    /// context is kept for the next message; call [`reset`](Self::reset)
    /// between messages when it must not be.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        let start = out.len();
        // A sync flush adds at most one empty stored block (5 bytes) to
        // the deflate bound, so one pass nearly always suffices.
        out.resize(start + zlib_rs::compress_bound(payload.len()) + 16, 0);
        let mut written = start;
        let mut input = payload;
        loop {
            let (used, wrote) = self.step(input, &mut out[written..])?;
            input = &input[used..];
            written += wrote;
            // The flush is complete when deflate stops with room to spare.
            if input.is_empty() && written < out.len() {
                break;
            }
            let grow = (out.len() / 2).max(1024);
            out.resize(out.len() + grow, 0);
        }
        out.truncate(written);
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(written - SYNC_TAIL.len());
            Ok(())
        } else {
            out.truncate(start);
            Err(CompressError("the sync flush did not end with 00 00 ff ff"))
        }
    }

    /// Forgets the context (the LZ77 window): the next message is
    /// compressed on its own, as `*_no_context_takeover` requires.
    /// Keeps the allocation.
    pub fn reset(&mut self) {
        match &mut self.deflate {
            DeflateState::ZlibRs(deflate) => {
                deflate.reset();
            }
            DeflateState::CZlib(deflate) => deflate.reset(),
        }
    }
}

/// The worker's compressors for connections whose server keeps no
/// context: one per window size in use, created on first use, reset
/// after every message, so it serves every such connection and a
/// connection holds no deflate state at all (like uWebSockets'
/// `SHARED_COMPRESSOR`). A broadcast compressed here once is valid for
/// every receiver with the same window.
#[derive(Debug)]
pub struct SharedCompressor {
    tuning: DeflateTuning,
    /// Index `bits - 9`.
    by_window: [Option<Compressor>; 7],
}

impl SharedCompressor {
    /// An empty set; nothing is allocated until a message is compressed.
    pub fn new(tuning: DeflateTuning) -> Self {
        SharedCompressor {
            tuning,
            by_window: Default::default(),
        }
    }

    /// Compresses one whole message with a fresh context and a window of
    /// `window_bits` (9..=15), appending the RFC 7692 payload to `out`.
    pub fn compress(
        &mut self,
        window_bits: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressError> {
        let bits = window_bits.clamp(MIN_CODEC_WINDOW_BITS, MAX_WINDOW_BITS);
        let tuning = self.tuning;
        let slot = &mut self.by_window[usize::from(bits - MIN_CODEC_WINDOW_BITS)];
        let compressor = slot.get_or_insert_with(|| Compressor::new(tuning, bits));
        let result = compressor.compress(payload, out);
        compressor.reset();
        result
    }
}

/// One raw-inflate state: the compressed bytes of a message go in as
/// they arrive (several frames, several reads), inflated bytes come out
/// into the caller's buffer, never more than the limit plus one byte.
pub struct Inflater {
    inflate: InflateState,
    window_bits: u8,
    /// Bytes inflated for the current message so far.
    produced: usize,
    /// The deflate stream ended (a block with BFINAL set): the rest of
    /// the message is ignored and the next message starts a new stream.
    ended: bool,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("backend", &self.backend())
            .field("window_bits", &self.window_bits)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

enum InflateState {
    ZlibRs(zlib_rs::Inflate),
    CZlib(ZInflate),
}

/// What one inflate call did: bytes read, bytes written, stream ended.
struct Step {
    used: usize,
    wrote: usize,
    ended: bool,
}

impl Inflater {
    /// A zlib-rs inflater (see [`with_backend`](Self::with_backend)).
    pub fn new(window_bits: u8) -> Self {
        Inflater::with_backend(Backend::ZlibRs, window_bits)
    }

    /// An inflater on `backend` for a sender whose window is at most
    /// `window_bits` (clamped to 9..=15; a 9-bit window reads 8-bit
    /// streams, and C zlib deflates no raw stream with 8 bits).
    pub fn with_backend(backend: Backend, window_bits: u8) -> Self {
        let window_bits = window_bits.clamp(MIN_CODEC_WINDOW_BITS, MAX_WINDOW_BITS);
        let inflate = match backend {
            Backend::ZlibRs => InflateState::ZlibRs(zlib_rs::Inflate::new(false, window_bits)),
            // As for the compressor: in range, and out of memory aborts.
            Backend::CZlib => InflateState::CZlib(
                ZInflate::new(window_bits)
                    .unwrap_or_else(|why| panic!("C zlib's inflateInit2 failed: {why}")),
            ),
        };
        Inflater {
            inflate,
            window_bits,
            produced: 0,
            ended: false,
        }
    }

    /// The implementation it runs on.
    pub fn backend(&self) -> Backend {
        match self.inflate {
            InflateState::ZlibRs(_) => Backend::ZlibRs,
            InflateState::CZlib(_) => Backend::CZlib,
        }
    }

    /// Feeds the next compressed bytes of the current message and appends
    /// what they inflate to into `out`; returns how many bytes were
    /// appended, so the caller can check new text at once (fail-fast
    /// UTF-8). `last` marks the final bytes of the message's final frame
    /// (they may be empty): the `00 00 ff ff` tail is added and the next
    /// call starts a new message (with the window kept: call
    /// [`reset`](Self::reset) or drop the inflater where the sender
    /// keeps no context).
    ///
    /// `limit` is the largest inflated message allowed; as soon as the
    /// message would exceed it, `TooBig` is returned, and `out` has grown
    /// by at most `limit + 1` bytes for this message.
    pub fn feed(
        &mut self,
        input: &[u8],
        last: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, InflateError> {
        self.feed_checked(input, last, limit, out, |_| true)
    }

    /// [`feed`](Self::feed), with `check` called on every piece of output
    /// as soon as it is inflated (at most 1 MiB at a time); when it
    /// returns `false`, inflation stops with `InvalidText`. This is how
    /// text fails fast: the UTF-8 validator runs between inflate steps,
    /// so an invalid byte early in a large message stops it early.
    pub fn feed_checked(
        &mut self,
        input: &[u8],
        last: bool,
        limit: usize,
        out: &mut Vec<u8>,
        mut check: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, InflateError> {
        let start = out.len();
        self.run(input, limit, out, &mut check)?;
        if last {
            self.run(&SYNC_TAIL, limit, out, &mut check)?;
            self.produced = 0;
            if self.ended {
                // A finished stream cannot continue: start afresh.
                self.reset();
            }
        }
        Ok(out.len() - start)
    }

    /// Forgets the window (the sender keeps no context). zlib-rs's reset
    /// always goes back to a 15-bit window, so its other windows re-create
    /// the state; C zlib's keeps the window bits and their allocation.
    pub fn reset(&mut self) {
        match &mut self.inflate {
            InflateState::ZlibRs(_) if self.window_bits != MAX_WINDOW_BITS => {
                *self = Inflater::new(self.window_bits);
                return;
            }
            InflateState::ZlibRs(inflate) => inflate.reset(false),
            InflateState::CZlib(inflate) => inflate.reset(),
        }
        self.produced = 0;
        self.ended = false;
    }

    /// The window this inflater reads.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }
}

/// The worker's spare inflaters, one per window size, for connections
/// whose peer keeps no context: a message takes one when it starts and
/// gives it back when it ends, so receiving costs no allocation and an
/// idle connection holds no inflater. (zlib-rs allocates its full
/// 32 KiB window whatever the window bits, about 46 KiB per inflater.)
#[derive(Debug, Default)]
pub struct InflaterPool {
    /// Index `bits - 9`.
    spare: [Option<Box<Inflater>>; 7],
}

impl InflaterPool {
    /// An inflater with a `window_bits` window and no context.
    pub fn take(&mut self, window_bits: u8) -> Box<Inflater> {
        let bits = window_bits.clamp(MIN_CODEC_WINDOW_BITS, MAX_WINDOW_BITS);
        self.spare[usize::from(bits - MIN_CODEC_WINDOW_BITS)]
            .take()
            .unwrap_or_else(|| Box::new(Inflater::new(bits)))
    }

    /// Takes back an inflater at a message boundary (or after an error);
    /// its context is forgotten.
    pub fn give(&mut self, mut inflater: Box<Inflater>) {
        inflater.reset();
        let slot = usize::from(inflater.window_bits - MIN_CODEC_WINDOW_BITS);
        self.spare[slot] = Some(inflater);
    }
}

impl Inflater {
    /// One inflate call into `out`.
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, InflateError> {
        match &mut self.inflate {
            InflateState::ZlibRs(inflate) => {
                let (in0, out0) = (inflate.total_in(), inflate.total_out());
                let status = inflate
                    .decompress(input, out, InflateFlush::NoFlush)
                    .map_err(|e| InflateError::Corrupt(inflate_reason(e)))?;
                Ok(Step {
                    used: (inflate.total_in() - in0) as usize,
                    wrote: (inflate.total_out() - out0) as usize,
                    ended: status == Status::StreamEnd,
                })
            }
            InflateState::CZlib(inflate) => {
                let done = inflate.inflate(input, out).map_err(InflateError::Corrupt)?;
                Ok(Step {
                    used: done.read,
                    wrote: done.written,
                    ended: done.ended,
                })
            }
        }
    }

    fn run(
        &mut self,
        mut input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
        check: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), InflateError> {
        // The message may end at most here (one byte past the limit, so
        // that "over the limit" can be seen).
        let message_end = (out.len() - self.produced).saturating_add(limit.saturating_add(1));
        loop {
            if self.ended {
                // RFC 7692 §7.2.3.4: a sender may end a message with a
                // BFINAL block and pad after it; what follows is ignored,
                // as zlib leaves it unused.
                return Ok(());
            }
            let len = out.len();
            let step = (input.len().saturating_mul(4))
                .clamp(MIN_INFLATE_STEP, MAX_INFLATE_STEP)
                .min(message_end - len);
            grow_exact(out, len + step, message_end);
            out.resize(len + step, 0);
            let Step { used, wrote, ended } = self.step(input, &mut out[len..])?;
            out.truncate(len + wrote);
            if !check(&out[len..]) {
                return Err(InflateError::InvalidText);
            }
            input = &input[used..];
            self.produced += wrote;
            if self.produced > limit {
                return Err(InflateError::TooBig { limit });
            }
            if ended {
                self.ended = true;
                continue;
            }
            // Done when inflate wants more input and has no output pending.
            if input.is_empty() && wrote < step {
                return Ok(());
            }
            if used == 0 && wrote == 0 {
                return Err(InflateError::Corrupt(
                    "the deflate stream makes no progress",
                ));
            }
        }
    }
}

/// Grows `out`'s capacity to at least `need`, doubling as a `Vec` would
/// but never past `cap` (the message's limit), so a bomb cannot make the
/// buffer larger than the limit allows.
fn grow_exact(out: &mut Vec<u8>, need: usize, cap: usize) {
    if need > out.capacity() {
        let target = out
            .capacity()
            .saturating_mul(2)
            .max(need)
            .min(cap.max(need));
        out.reserve_exact(target - out.len());
    }
}

fn inflate_reason(e: zlib_rs::InflateError) -> &'static str {
    match e {
        zlib_rs::InflateError::NeedDict { .. } => "the stream asks for a preset dictionary",
        zlib_rs::InflateError::DataError => "not a valid DEFLATE stream",
        zlib_rs::InflateError::StreamError => "inflate state error",
        zlib_rs::InflateError::MemError => "out of memory",
    }
}
