//! The incremental frame reader: bytes in as they are read from a socket,
//! whole messages and control frames out.
//!
//! The caller reads into its own buffer (the worker's shared scratch
//! buffer) and hands the bytes over as an [`Input`]. Payloads are unmasked
//! there, in place, once; text is validated there, once, as it arrives. A
//! message whose frame is whole in the input comes back borrowed from it
//! (no copy); anything cut by the end of a read is copied once into a
//! buffer that lives only until its message or control frame is complete,
//! so a reader between messages holds no heap memory at all.

use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::Role;

use super::error::{is_valid_close_code, FrameError};
use super::header::{self, Header, MAX_HEADER};
use super::mask::{apply_mask, apply_mask_ascii};
use super::utf8::Utf8Validator;

/// A buffer cut by the end of a read is reserved for its whole frame at
/// once up to this size (no reallocation, no memmove); beyond it, it grows
/// as bytes arrive, so a header that announces a huge frame costs nothing
/// until the bytes are really sent.
const RESERVE_AT_ONCE: u64 = 1 << 20;

/// Bytes read from the socket and not yet consumed by the reader.
#[derive(Debug)]
pub struct Input<'d> {
    rest: &'d mut [u8],
}

impl<'d> Input<'d> {
    /// Wraps the bytes of one read. They are modified in place (unmasked).
    pub fn new(bytes: &'d mut [u8]) -> Self {
        Input { rest: bytes }
    }

    /// Bytes not consumed yet.
    pub fn len(&self) -> usize {
        self.rest.len()
    }

    /// Whether everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Splits off the next `n` bytes (`n <= len()`).
    #[inline]
    fn take(&mut self, n: usize) -> &'d mut [u8] {
        let rest = std::mem::take(&mut self.rest);
        let (head, tail) = rest.split_at_mut(n);
        self.rest = tail;
        head
    }
}

/// The payload of a message or control frame: borrowed from the input
/// when it arrived whole in one read, owned when it was assembled.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload<'d> {
    /// Unmasked in place in the caller's read buffer.
    Borrowed(&'d mut [u8]),
    /// Assembled from several reads or frames (copied once).
    Owned(Vec<u8>),
}

impl Payload<'_> {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }

    /// The bytes, writable (e.g. to mask them in place for a client echo).
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }

    /// The bytes as an owned vector (a copy only if borrowed).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Borrowed(b) => b.to_vec(),
            Payload::Owned(v) => v,
        }
    }

    /// Whether the payload is borrowed from the input (was not copied).
    pub fn is_borrowed(&self) -> bool {
        matches!(self, Payload::Borrowed(_))
    }
}

impl std::ops::Deref for Payload<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A text message: its payload is valid UTF-8 (checked), unless it
    /// is compressed (then the extension checks it after inflating).
    Text,
    /// A binary message.
    Binary,
}

/// What the reader found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'d> {
    /// A whole data message.
    Message {
        /// Text or binary.
        kind: MessageKind,
        /// RSV1 was set on its first frame (only when allowed, see
        /// [`FrameReader::set_allow_rsv1`]): the payload is compressed.
        compressed: bool,
        /// The payload, unmasked.
        payload: Payload<'d>,
    },
    /// A ping; the caller answers with a pong carrying the same payload.
    Ping(Payload<'d>),
    /// A pong.
    Pong(Payload<'d>),
    /// A valid close frame (`None`: it carried no code). The reader ignores
    /// everything after it.
    Close(Option<CloseFrame>),
}

/// Size limits; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload accepted, in bytes.
    pub max_frame_size: Option<usize>,
    /// Largest message accepted (the sum of its frames), in bytes.
    pub max_message_size: Option<usize>,
}

/// Where the reader is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Expecting a frame header (maybe cut: see `head_len`).
    Header,
    /// Inside a frame's payload.
    Payload(Frame),
    /// A close frame was received: the rest is ignored.
    Closed,
    /// A protocol error was found: the same error again.
    Failed(FrameError),
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    opcode: u8,
    fin: bool,
    rsv1: bool,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Payload bytes already consumed.
    done: u64,
}

/// An unfinished data message.
#[derive(Debug, PartialEq, Eq)]
struct Partial {
    kind: MessageKind,
    compressed: bool,
    /// The size announced by its frame headers so far.
    size: u64,
    utf8: Utf8Validator,
    buf: Vec<u8>,
}

/// The frame reader of one connection (server or client role).
#[derive(Debug)]
pub struct FrameReader {
    role: Role,
    max_frame: u64,
    max_message: u64,
    allow_rsv1: bool,
    state: State,
    /// The start of a frame header cut by the end of a read.
    head: [u8; MAX_HEADER],
    head_len: u8,
    /// The unfinished data message, if any (boxed: every connection
    /// carries the field for its whole life, and it is empty between
    /// messages).
    message: Option<Box<Partial>>,
    /// The payload of a control frame cut by the end of a read.
    control: Vec<u8>,
}

impl FrameReader {
    /// A reader for the `Server` role (expects masked frames) or the
    /// `Client` role (expects unmasked frames).
    pub fn new(role: Role, limits: Limits) -> Self {
        let mut reader = FrameReader {
            role,
            max_frame: u64::MAX,
            max_message: u64::MAX,
            allow_rsv1: false,
            state: State::Header,
            head: [0; MAX_HEADER],
            head_len: 0,
            message: None,
            control: Vec::new(),
        };
        reader.set_limits(limits);
        reader
    }

    /// Changes the size limits (for the frames whose header comes next).
    pub fn set_limits(&mut self, limits: Limits) {
        let bound = |n: Option<usize>| n.map_or(u64::MAX, |n| n as u64);
        self.max_frame = bound(limits.max_frame_size);
        self.max_message = bound(limits.max_message_size);
    }

    /// Accepts RSV1 on the first frame of a data message (once an
    /// extension such as permessage-deflate is negotiated); refused with
    /// 1002 otherwise.
    pub fn set_allow_rsv1(&mut self, allow: bool) {
        self.allow_rsv1 = allow;
    }

    /// Heap bytes held for unfinished frames and messages (0 between
    /// messages: nothing is kept at rest).
    pub fn buffered_capacity(&self) -> usize {
        self.control.capacity() + self.message.as_ref().map_or(0, |m| m.buf.capacity())
    }

    /// Whether the reader is between frames, with no message unfinished.
    pub fn is_idle(&self) -> bool {
        self.state == State::Header && self.head_len == 0 && self.message.is_none()
    }

    /// Whether a close frame was received.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The next event from `input`, or `None` once all of `input` is
    /// consumed without completing one (feed the next read then). After an
    /// error the connection must be failed with the error's close code; the
    /// reader keeps returning it.
    ///
    /// Always inlined into the caller's read loop, with `whole_message`:
    /// the common case then costs no call. With a plain `#[inline]` the
    /// compiler kept both calls from the worker's session; inlining them
    /// took the pipelined 64 B echo (`-w 32`) from 0.963 to 0.977 of
    /// uWebSockets' messages per server CPU-second (10 interleaved rounds).
    #[inline(always)]
    pub fn next<'d>(&mut self, input: &mut Input<'d>) -> Result<Option<Event<'d>>, FrameError> {
        match self.whole_message(input) {
            Some(Ok(event)) => Ok(Some(event)),
            Some(Err(e)) => Err(self.fail(e)),
            None => self.next_in_steps(input),
        }
    }

    /// [`next`](Self::next) through the state machine.
    #[inline(never)]
    fn next_in_steps<'d>(
        &mut self,
        input: &mut Input<'d>,
    ) -> Result<Option<Event<'d>>, FrameError> {
        self.step(input).map_err(|e| self.fail(e))
    }

    /// Records a protocol error (the reader keeps returning it) and drops
    /// what it held.
    #[cold]
    fn fail(&mut self, e: FrameError) -> FrameError {
        self.state = State::Failed(e.clone());
        self.message = None;
        self.control = Vec::new();
        e
    }

    /// The common case, taken without the state machine: between
    /// messages, `input` starts with a whole, final, unfragmented text or
    /// binary frame (no RSV bits, masked as the role expects, up to 64 KiB,
    /// within the limits). `None` for anything else, with `input`
    /// untouched: the state machine then handles it, errors included.
    #[inline(always)]
    fn whole_message<'d>(
        &mut self,
        input: &mut Input<'d>,
    ) -> Option<Result<Event<'d>, FrameError>> {
        if !matches!(self.state, State::Header) || self.head_len != 0 || self.message.is_some() {
            return None;
        }
        let (&first, &second) = (input.rest.first()?, input.rest.get(1)?);
        // FIN set, RSV1-3 clear, opcode 1 or 2.
        if first & 0xf0 != 0x80 || !matches!(first & 0x0f, 1 | 2) {
            return None;
        }
        let masked = second & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return None;
        }
        let (len, at) = match second & 0x7f {
            127 => return None,
            126 => {
                let ext = input.rest.get(2..4)?;
                (usize::from(u16::from_be_bytes([ext[0], ext[1]])), 4)
            }
            short => (usize::from(short), 2),
        };
        let head = at + if masked { 4 } else { 0 };
        if input.len() < head + len || len as u64 > self.max_frame.min(self.max_message) {
            return None;
        }
        let key = if masked {
            Some([
                input.rest[at],
                input.rest[at + 1],
                input.rest[at + 2],
                input.rest[at + 3],
            ])
        } else {
            None
        };
        input.take(head);
        let bytes = input.take(len);
        let kind = kind_of(first & 0x0f);
        if !unmask(bytes, key, 0, kind) {
            return Some(Err(FrameError::InvalidUtf8));
        }
        Some(Ok(Event::Message {
            kind,
            compressed: false,
            payload: Payload::Borrowed(bytes),
        }))
    }

    fn step<'d>(&mut self, input: &mut Input<'d>) -> Result<Option<Event<'d>>, FrameError> {
        loop {
            match &self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Closed => {
                    input.take(input.len());
                    return Ok(None);
                }
                State::Header => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let Some(h) = self.read_header(input) else {
                        return Ok(None);
                    };
                    self.start_frame(h)?;
                }
                &State::Payload(frame) => {
                    if input.is_empty() && frame.done < frame.len {
                        return Ok(None);
                    }
                    let event = if frame.opcode >= 8 {
                        self.control_payload(frame, input)?
                    } else {
                        self.data_payload(frame, input)?
                    };
                    if event.is_some() {
                        return Ok(event);
                    }
                }
            }
        }
    }

    /// Takes a frame header from `input` (or what there is of it).
    fn read_header(&mut self, input: &mut Input<'_>) -> Option<Header> {
        if self.head_len == 0 {
            if let Some((h, n)) = header::parse(input.rest) {
                input.take(n);
                return Some(h);
            }
            // Cut by the end of the read: fewer than 14 bytes to keep.
            let n = input.len();
            self.head[..n].copy_from_slice(input.take(n));
            self.head_len = n as u8;
            return None;
        }
        loop {
            let have = usize::from(self.head_len);
            let need = header::header_len(&self.head[..have]);
            if have >= need {
                break;
            }
            if input.is_empty() {
                return None;
            }
            let take = (need - have).min(input.len());
            self.head[have..have + take].copy_from_slice(input.take(take));
            self.head_len += take as u8;
        }
        let parsed = header::parse(&self.head[..usize::from(self.head_len)]);
        self.head_len = 0;
        parsed.map(|(h, _)| h)
    }

    /// Checks a header against RFC 6455 and the limits; enters its payload.
    fn start_frame(&mut self, h: Header) -> Result<(), FrameError> {
        if h.rsv23 {
            return Err(FrameError::ReservedBits);
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(FrameError::Unmasked),
            (Role::Client, true) => return Err(FrameError::Masked),
            _ => {}
        }
        if h.len >> 63 != 0 {
            return Err(FrameError::LengthOverflow);
        }
        match h.opcode {
            8..=10 => {
                if !h.fin {
                    return Err(FrameError::FragmentedControl);
                }
                if h.len > 125 {
                    return Err(FrameError::ControlTooLong(h.len));
                }
                if h.rsv1 {
                    return Err(FrameError::ReservedBits);
                }
            }
            0 => {
                let (max_frame, max_message) = (self.max_frame, self.max_message);
                let Some(partial) = &mut self.message else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                if h.rsv1 {
                    return Err(FrameError::ReservedBits);
                }
                check_sizes(h.len, partial.size, max_frame, max_message)?;
                partial.size += h.len;
            }
            1 | 2 => {
                if self.message.is_some() {
                    return Err(FrameError::ExpectedContinuation);
                }
                if h.rsv1 && !self.allow_rsv1 {
                    return Err(FrameError::ReservedBits);
                }
                check_sizes(h.len, 0, self.max_frame, self.max_message)?;
                if !h.fin {
                    self.message = Some(Box::new(Partial::new(h.opcode, h.rsv1, h.len)));
                }
            }
            op => return Err(FrameError::UnknownOpcode(op)),
        }
        self.state = State::Payload(Frame {
            opcode: h.opcode,
            fin: h.fin,
            rsv1: h.rsv1,
            mask: h.mask,
            len: h.len,
            done: 0,
        });
        Ok(())
    }

    /// Payload of a text, binary or continuation frame.
    fn data_payload<'d>(
        &mut self,
        mut f: Frame,
        input: &mut Input<'d>,
    ) -> Result<Option<Event<'d>>, FrameError> {
        let left = f.len - f.done;
        if self.message.is_none() && f.fin && input.len() as u64 >= left {
            // A whole single-frame message in this read: no copy at all.
            let bytes = input.take(left as usize);
            let kind = kind_of(f.opcode);
            // A compressed payload is checked once inflated.
            let check = if f.rsv1 { MessageKind::Binary } else { kind };
            if !unmask(bytes, f.mask, 0, check) {
                return Err(FrameError::InvalidUtf8);
            }
            self.state = State::Header;
            return Ok(Some(Event::Message {
                kind,
                compressed: f.rsv1,
                payload: Payload::Borrowed(bytes),
            }));
        }
        let n = left.min(input.len() as u64) as usize;
        let bytes = input.take(n);
        let partial = self
            .message
            .get_or_insert_with(|| Box::new(Partial::new(f.opcode, f.rsv1, f.len)));
        if let Some(key) = f.mask {
            apply_mask(bytes, key, f.done);
        }
        if partial.kind == MessageKind::Text && !partial.compressed && !partial.utf8.feed(bytes) {
            return Err(FrameError::InvalidUtf8);
        }
        if f.done == 0 {
            partial.buf.reserve(left.min(RESERVE_AT_ONCE) as usize);
        }
        partial.buf.extend_from_slice(bytes);
        f.done += n as u64;
        if f.done < f.len {
            self.state = State::Payload(f);
            return Ok(None);
        }
        self.state = State::Header;
        if !f.fin {
            return Ok(None);
        }
        let Some(done) = self.message.take().map(|m| *m) else {
            return Ok(None);
        };
        if done.kind == MessageKind::Text && !done.compressed && !done.utf8.is_complete() {
            return Err(FrameError::InvalidUtf8);
        }
        Ok(Some(Event::Message {
            kind: done.kind,
            compressed: done.compressed,
            payload: Payload::Owned(done.buf),
        }))
    }

    /// Payload of a ping, pong or close frame.
    fn control_payload<'d>(
        &mut self,
        mut f: Frame,
        input: &mut Input<'d>,
    ) -> Result<Option<Event<'d>>, FrameError> {
        let left = (f.len - f.done) as usize;
        let payload = if f.done == 0 && input.len() >= left {
            let bytes = input.take(left);
            if let Some(key) = f.mask {
                apply_mask(bytes, key, 0);
            }
            Payload::Borrowed(bytes)
        } else {
            let n = left.min(input.len());
            let bytes = input.take(n);
            if let Some(key) = f.mask {
                apply_mask(bytes, key, f.done);
            }
            if f.done == 0 {
                self.control.reserve_exact(f.len as usize);
            }
            self.control.extend_from_slice(bytes);
            f.done += n as u64;
            if f.done < f.len {
                self.state = State::Payload(f);
                return Ok(None);
            }
            Payload::Owned(std::mem::take(&mut self.control))
        };
        self.state = State::Header;
        Ok(Some(match f.opcode {
            9 => Event::Ping(payload),
            10 => Event::Pong(payload),
            _ => {
                let close = parse_close(&payload)?;
                self.state = State::Closed;
                self.message = None;
                Event::Close(close)
            }
        }))
    }
}

impl Partial {
    fn new(opcode: u8, compressed: bool, size: u64) -> Partial {
        Partial {
            kind: kind_of(opcode),
            compressed,
            size,
            utf8: Utf8Validator::default(),
            buf: Vec::new(),
        }
    }
}

/// Unmasks a whole message's payload in place (when `mask` is set) and,
/// for text, checks that it is UTF-8: false if it is not.
fn unmask(bytes: &mut [u8], mask: Option<[u8; 4]>, offset: u64, kind: MessageKind) -> bool {
    // Most text is ASCII, and checking for ASCII is several times faster
    // than `from_utf8` (a vector at a time, no setup); masked text is
    // checked while it is unmasked.
    let ascii = match (mask, kind) {
        (Some(key), MessageKind::Binary) => {
            apply_mask(bytes, key, offset);
            return true;
        }
        (None, MessageKind::Binary) => return true,
        (Some(key), MessageKind::Text) => apply_mask_ascii(bytes, key, offset),
        (None, MessageKind::Text) => bytes.is_ascii(),
    };
    ascii || std::str::from_utf8(bytes).is_ok()
}

fn kind_of(opcode: u8) -> MessageKind {
    if opcode == 1 {
        MessageKind::Text
    } else {
        MessageKind::Binary
    }
}

/// Refuses a frame of `len` bytes over `max_frame`, or one that takes its
/// message (`so_far` bytes before it) over `max_message`.
fn check_sizes(len: u64, so_far: u64, max_frame: u64, max_message: u64) -> Result<(), FrameError> {
    if len > max_frame {
        return Err(FrameError::FrameTooLarge {
            size: len,
            max: max_frame,
        });
    }
    let size = so_far.saturating_add(len);
    if size > max_message {
        return Err(FrameError::MessageTooLarge {
            size,
            max: max_message,
        });
    }
    Ok(())
}

/// Checks a close frame's payload (RFC 6455 §5.5.1, §7.4).
pub fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidCloseReason)?;
            Ok(Some(CloseFrame {
                code: code.into(),
                reason: reason.into(),
            }))
        }
    }
}
