//! The buffer a request head is read into.
//!
//! A head nearly always arrives whole in one read and is parsed, routed
//! and answered in the same step, so the worker lends one buffer to the
//! step and takes it back at its end ([`HeadBuf`]'s `Drop`): a handshake
//! then allocates nothing for its head, and reads go straight into memory
//! that was zeroed once per worker rather than through a zeroed chunk per
//! read. A request still incomplete keeps a copy of what it has (its
//! size, not the buffer's) until its next step.

use std::cell::Cell;
use std::io::{self, Read};

/// How far past `max_request_head` the buffer reaches, so that the read
/// that crosses the limit can take a whole chunk, as it always could.
const SLACK: usize = 4096;

thread_local! {
    /// The worker's spare head buffer (the loop is single-threaded).
    static SPARE: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

/// How reading a request head ended.
pub(super) enum HeadRead {
    /// The socket has no more bytes for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// More than the limit arrived; stop reading.
    Full,
}

/// A request head being read: the worker's buffer, lent for one step.
pub(super) struct HeadBuf {
    bytes: Box<[u8]>,
    /// How much of `bytes` holds the head.
    len: usize,
}

impl HeadBuf {
    /// The buffer for a head of at most `max_head` bytes, holding
    /// `partial` (what earlier steps of this request read).
    pub fn lend(max_head: usize, partial: &[u8]) -> HeadBuf {
        let size = max_head.max(partial.len()) + SLACK;
        let bytes = SPARE
            .with(Cell::take)
            .filter(|b| b.len() == size)
            .unwrap_or_else(|| vec![0; size].into_boxed_slice());
        let mut head = HeadBuf { bytes, len: 0 };
        head.bytes[..partial.len()].copy_from_slice(partial);
        head.len = partial.len();
        head
    }

    /// The bytes read so far.
    pub fn filled(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Reads until the socket would block, the peer closes, or more than
    /// `limit` bytes are held (`limit` is at most the `max_head` the
    /// buffer was lent for, so a read always has room).
    pub fn read_from(&mut self, stream: &mut impl Read, limit: usize) -> io::Result<HeadRead> {
        loop {
            if self.len > limit || self.len == self.bytes.len() {
                return Ok(HeadRead::Full);
            }
            match stream.read(&mut self.bytes[self.len..]) {
                Ok(0) => return Ok(HeadRead::Eof),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(HeadRead::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for HeadBuf {
    /// Gives the buffer back to the worker (`try_with`: a buffer dropped
    /// while the thread's locals are torn down is simply freed).
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        let _ = SPARE.try_with(|spare| spare.set(Some(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that has `data` for reads of at most `chunk` bytes, then
    /// says WouldBlock.
    struct Source {
        data: Vec<u8>,
        chunk: usize,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.chunk).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn reads_until_would_block_and_keeps_what_earlier_steps_read() {
        let mut head = HeadBuf::lend(64, b"GET ");
        let mut src = Source {
            data: b"/ HTTP/1.1\r\n".to_vec(),
            chunk: 3,
        };
        assert!(matches!(
            head.read_from(&mut src, 64),
            Ok(HeadRead::WouldBlock)
        ));
        assert_eq!(head.filled(), b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn stops_once_past_the_limit() {
        let mut head = HeadBuf::lend(10, b"");
        let mut src = Source {
            data: vec![b'x'; 10 * SLACK],
            chunk: 4,
        };
        assert!(matches!(head.read_from(&mut src, 10), Ok(HeadRead::Full)));
        assert_eq!(head.filled().len(), 12);
        // A whole chunk crosses the limit in one read.
        let mut head = HeadBuf::lend(10, b"");
        src.chunk = usize::MAX;
        assert!(matches!(head.read_from(&mut src, 10), Ok(HeadRead::Full)));
        assert_eq!(head.filled().len(), 10 + SLACK);
    }

    #[test]
    fn the_buffer_is_lent_clean_of_the_last_request() {
        let mut head = HeadBuf::lend(16, b"");
        let mut src = Source {
            data: b"first request".to_vec(),
            chunk: 64,
        };
        let _ = head.read_from(&mut src, 16);
        drop(head);
        let head = HeadBuf::lend(16, b"ab");
        assert_eq!(head.filled(), b"ab");
    }
}
