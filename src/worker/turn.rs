//! The frames broadcast during one loop turn, each encoded once (header
//! and payload) into one worker-wide buffer and shared by its receivers
//! until the end-of-turn flush.
//!
//! A receiver is given a [`Span`] of this buffer instead of a copy of the
//! frame; the spans of consecutive broadcasts to the same receivers join,
//! so at the end of the turn each receiver writes all its frames of the
//! turn with one send, straight from here. Only what a socket does not
//! take is copied into that connection's own output queue. So a
//! broadcast costs its receivers no allocation and no copy when their
//! sockets keep up, where a copy into each receiver's queue used to
//! allocate (and free, once sent) a buffer per receiver per turn.
//!
//! Spans are valid until [`end_turn`], which the worker calls once every
//! receiver given one has written or queued it (its end-of-turn flush).

use std::cell::RefCell;
use std::num::NonZeroU64;

use crate::frame::EncodedHeader;

/// A turn's frames are appended up to this many bytes; a broadcast that
/// would pass it (with frames already in the buffer) goes to its
/// receivers' queues as before. A single frame of any size is taken.
const TURN_MAX: usize = 1 << 20;

/// The capacity kept between turns (a larger buffer, grown by a rare
/// large broadcast, is freed at the end of its turn).
const KEEP: usize = 1 << 20;

/// The worker's turn buffer and the number of its turn (wrapping).
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    epoch: u8,
}

thread_local! {
    static TURN: RefCell<Frames> = RefCell::new(Frames::default());
}

/// Bits of a [`Span`]'s offsets: frames are taken up to 256 MiB into
/// the turn's buffer (larger ones go to each receiver's queue).
const OFFSET_BITS: u32 = 28;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// A run of whole frames in the current turn's buffer: its start and end
/// offsets and the turn's number, packed into one
/// non-zero word, since every open connection carries an `Option<Span>`
/// (8 bytes; a span never ends at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span(NonZeroU64);

impl Span {
    fn new(epoch: u8, start: usize, end: usize) -> Option<Span> {
        let (start, end) = (u64::try_from(start).ok()?, u64::try_from(end).ok()?);
        if end > OFFSET_MASK {
            return None;
        }
        let word = (u64::from(epoch) << (2 * OFFSET_BITS)) | (start << OFFSET_BITS) | end;
        NonZeroU64::new(word).map(Span)
    }

    fn epoch(self) -> u8 {
        (self.0.get() >> (2 * OFFSET_BITS)) as u8
    }

    fn start(self) -> usize {
        ((self.0.get() >> OFFSET_BITS) & OFFSET_MASK) as usize
    }

    fn end(self) -> usize {
        (self.0.get() & OFFSET_MASK) as usize
    }

    /// Bytes in the span (frame headers included).
    pub fn len(&self) -> usize {
        self.end() - self.start()
    }

    /// One span for `self` followed by `next`, if `next` starts where
    /// `self` ends (consecutive broadcasts to the same receivers).
    pub fn join(self, next: Span) -> Option<Span> {
        if self.epoch() != next.epoch() || self.end() != next.start() {
            return None;
        }
        Span::new(self.epoch(), self.start(), next.end())
    }
}

/// Appends one whole final unmasked frame (`opcode`, RSV1 for a
/// compressed payload); `None` if the turn's buffer is full (see
/// [`TURN_MAX`]): the caller then queues the frame to each receiver.
pub(super) fn push_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Option<Span> {
    let header = EncodedHeader::new(true, rsv1, opcode, None, payload.len() as u64);
    let header = header.as_bytes();
    let len = header.len() + payload.len();
    TURN.with(|turn| {
        let mut turn = turn.borrow_mut();
        let start = turn.buf.len();
        let end = start.checked_add(len)?;
        if start > 0 && end > TURN_MAX {
            return None;
        }
        let span = Span::new(turn.epoch, start, end)?;
        turn.buf.reserve(len);
        turn.buf.extend_from_slice(header);
        turn.buf.extend_from_slice(payload);
        Some(span)
    })
}

/// Runs `f` over the bytes of `span`; `None` if the span belongs to an
/// ended turn (a bug: every span is written or queued before its turn
/// ends; the check sees the previous 255 turns).
pub(super) fn with_bytes<R>(span: Span, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    TURN.with(|turn| {
        let turn = turn.borrow();
        if span.epoch() != turn.epoch {
            return None;
        }
        turn.buf.get(span.start()..span.end()).map(f)
    })
}

/// Ends the turn: its spans are invalid from now on; the buffer is
/// emptied (and freed if a large broadcast grew it past [`KEEP`]).
pub(super) fn end_turn() {
    TURN.with(|turn| {
        let mut turn = turn.borrow_mut();
        if turn.buf.is_empty() {
            return;
        }
        turn.epoch = turn.epoch.wrapping_add(1);
        if turn.buf.capacity() > KEEP {
            turn.buf = Vec::new();
        } else {
            turn.buf.clear();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_frames_join_and_end_with_the_turn() {
        let a = push_frame(0x1, false, b"hello").expect("room");
        let b = push_frame(0x2, false, &[7; 200]).expect("room");
        assert_eq!(a.len(), 2 + 5);
        assert_eq!(b.len(), 4 + 200);
        let both = a.join(b).expect("adjacent");
        assert_eq!(b.join(a), None, "not in order");
        let bytes = with_bytes(both, <[u8]>::to_vec).expect("this turn");
        assert_eq!(&bytes[..7], b"\x81\x05hello");
        assert_eq!(&bytes[7..11], &[0x82, 126, 0, 200]);
        end_turn();
        assert_eq!(with_bytes(both, <[u8]>::len), None, "stale after the turn");
        let c = push_frame(0x1, true, b"x").expect("room");
        assert_eq!(with_bytes(c, <[u8]>::to_vec), Some(b"\xc1\x01x".to_vec()));
        assert_eq!(a.join(c), None, "not across turns");
        end_turn();
    }

    #[test]
    fn a_full_turn_refuses_more_frames_but_takes_one_large_frame() {
        let big = vec![0u8; TURN_MAX + 1];
        let span = push_frame(0x2, false, &big).expect("alone it fits");
        assert!(push_frame(0x2, false, b"more").is_none());
        assert_eq!(span.len(), 10 + big.len());
        end_turn();
        assert!(push_frame(0x2, false, b"more").is_some());
        end_turn();
    }

    #[test]
    fn spans_hold_offsets_up_to_256_mib() {
        let span = Span::new(7, 5, OFFSET_MASK as usize).expect("fits");
        assert_eq!(
            (span.epoch(), span.start(), span.len()),
            (7, 5, OFFSET_MASK as usize - 5)
        );
        assert_eq!(Span::new(7, 5, OFFSET_MASK as usize + 1), None);
        assert_eq!(std::mem::size_of::<Option<Span>>(), 8);
    }
}
