//! The buffer a request head is read into.
//!
//! A head nearly always arrives whole in one read and is parsed, routed
//! and answered in the same step, so the worker lends one buffer to the
//! step and takes it back at its end ([`Lent`]'s `Drop`): a handshake
//! then allocates nothing for its head, and reads go straight into memory
//! that was zeroed once per worker rather than through a zeroed chunk per
//! read. A request still incomplete keeps what it has in a buffer of its
//! own (its size, not the lent buffer's), and its next steps read on into
//! that one: a client sending a byte at a time costs each step only the
//! bytes it reads, not a copy of the whole head in and out.

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

/// A request head being read: into the worker's buffer on the first step,
/// into the request's own buffer after that.
pub(super) enum HeadBuf {
    /// The first step: the worker's buffer, lent for the step.
    Lent(Lent),
    /// A later step: what earlier steps read, growing as reads arrive.
    Own(Vec<u8>),
}

/// The worker's buffer, lent for one step.
pub(super) struct Lent {
    bytes: Box<[u8]>,
    /// How much of `bytes` holds the head.
    len: usize,
}

impl HeadBuf {
    /// The buffer for a head of at most `max_head` bytes, holding
    /// `partial` (what earlier steps of this request read).
    pub fn lend(max_head: usize, partial: Vec<u8>) -> HeadBuf {
        if !partial.is_empty() {
            return HeadBuf::Own(partial);
        }
        let size = max_head + SLACK;
        let bytes = SPARE
            .with(Cell::take)
            .filter(|b| b.len() == size)
            .unwrap_or_else(|| vec![0; size].into_boxed_slice());
        HeadBuf::Lent(Lent { bytes, len: 0 })
    }

    /// The bytes read so far.
    pub fn filled(&self) -> &[u8] {
        match self {
            HeadBuf::Lent(lent) => &lent.bytes[..lent.len],
            HeadBuf::Own(own) => own,
        }
    }

    /// What the request keeps until its next step (the lent buffer goes
    /// back to the worker).
    pub fn into_partial(self) -> Vec<u8> {
        match self {
            HeadBuf::Lent(lent) => lent.bytes[..lent.len].to_vec(),
            HeadBuf::Own(own) => own,
        }
    }

    /// Reads until the socket would block, the peer closes, or more than
    /// `limit` bytes are held (`limit` is at most the `max_head` the
    /// buffer was made for; one read may reach `SLACK` bytes past it).
    pub fn read_from(&mut self, stream: &mut impl Read, limit: usize) -> io::Result<HeadRead> {
        loop {
            let got = match self {
                HeadBuf::Lent(lent) => lent.read(stream, limit),
                HeadBuf::Own(own) => read_appending(own, stream, limit),
            };
            match got {
                Ok(Some(0)) => return Ok(HeadRead::Eof),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(HeadRead::Full),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(HeadRead::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Lent {
    /// One read into the rest of the buffer; `None` once more than
    /// `limit` bytes are held or the buffer is full.
    fn read(&mut self, stream: &mut impl Read, limit: usize) -> io::Result<Option<usize>> {
        if self.len > limit || self.len == self.bytes.len() {
            return Ok(None);
        }
        let n = stream.read(&mut self.bytes[self.len..])?;
        self.len += n;
        Ok(Some(n))
    }
}

/// One read appended to `own`, through a chunk on the stack so that `own`
/// grows with what arrives (amortised, as a `Vec` does), not by a whole
/// chunk per read: a slow client's head holds about its size between
/// steps. `None` once more than `limit` bytes are held.
fn read_appending(
    own: &mut Vec<u8>,
    stream: &mut impl Read,
    limit: usize,
) -> io::Result<Option<usize>> {
    if own.len() > limit {
        return Ok(None);
    }
    let mut chunk = [0u8; SLACK];
    let n = stream.read(&mut chunk)?;
    own.extend_from_slice(&chunk[..n]);
    Ok(Some(n))
}

impl Drop for Lent {
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
        let mut head = HeadBuf::lend(64, b"GET ".to_vec());
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
        let mut head = HeadBuf::lend(10, Vec::new());
        let mut src = Source {
            data: vec![b'x'; 10 * SLACK],
            chunk: 4,
        };
        assert!(matches!(head.read_from(&mut src, 10), Ok(HeadRead::Full)));
        assert_eq!(head.filled().len(), 12);
        // A whole chunk crosses the limit in one read.
        let mut head = HeadBuf::lend(10, Vec::new());
        src.chunk = usize::MAX;
        assert!(matches!(head.read_from(&mut src, 10), Ok(HeadRead::Full)));
        assert_eq!(head.filled().len(), 10 + SLACK);
    }

    #[test]
    fn the_buffer_is_lent_clean_of_the_last_request() {
        let mut head = HeadBuf::lend(16, Vec::new());
        let mut src = Source {
            data: b"first request".to_vec(),
            chunk: 64,
        };
        let _ = head.read_from(&mut src, 16);
        drop(head);
        let head = HeadBuf::lend(16, b"ab".to_vec());
        assert_eq!(head.filled(), b"ab");
    }

    #[test]
    fn later_steps_read_on_into_the_requests_own_buffer() {
        // Room for what comes: a step must not copy the head it holds.
        let mut partial = Vec::with_capacity(SLACK * 4);
        partial.extend_from_slice(b"GET /");
        let at = partial.as_ptr();
        let mut head = HeadBuf::lend(64, partial);
        let mut src = Source {
            data: b"chat HTTP/1.1\r\n".to_vec(),
            chunk: 1,
        };
        assert!(matches!(
            head.read_from(&mut src, 64),
            Ok(HeadRead::WouldBlock)
        ));
        let partial = head.into_partial();
        assert_eq!(partial, b"GET /chat HTTP/1.1\r\n");
        assert_eq!(partial.as_ptr(), at, "the head was copied");
        // What a slow head keeps between steps grows with what arrived,
        // not by a read chunk per step.
        let mut head = HeadBuf::lend(64, b"GET /".to_vec());
        let mut src = Source {
            data: b"chat HTTP/1.1\r\n".to_vec(),
            chunk: 1,
        };
        let _ = head.read_from(&mut src, 64);
        let partial = head.into_partial();
        assert_eq!(partial, b"GET /chat HTTP/1.1\r\n");
        assert!(partial.capacity() < 64, "{} bytes held", partial.capacity());
        // The same bound as the lent buffer: one read past the limit.
        let mut head = HeadBuf::lend(10, b"ab".to_vec());
        let mut src = Source {
            data: vec![b'x'; 10 * SLACK],
            chunk: usize::MAX,
        };
        assert!(matches!(head.read_from(&mut src, 10), Ok(HeadRead::Full)));
        assert_eq!(head.filled().len(), 2 + SLACK);
    }
}
