//! A reader that ends at the end of an HTTP response head, so that the
//! handshake (tungstenite's) takes the 101 answer and nothing more: frames
//! the server sent right behind it are kept for the client's frame reader.

use std::io::{self, Read, Write};

/// Wraps the stream during the handshake; see the module documentation.
#[derive(Debug)]
pub(crate) struct UntilHead<'s, S> {
    inner: &'s mut S,
    /// The last four bytes seen, to find `\r\n\r\n` (or `\n\n`) across reads.
    window: u32,
    /// The head is complete: reads return nothing more.
    done: bool,
    /// Bytes read behind the head.
    extra: Vec<u8>,
}

impl<'s, S> UntilHead<'s, S> {
    /// Starts at the first byte of the response.
    pub(crate) fn new(inner: &'s mut S) -> Self {
        UntilHead {
            inner,
            window: 0,
            done: false,
            extra: Vec::new(),
        }
    }

    /// The bytes that followed the head (the first frames), if any.
    pub(crate) fn into_extra(self) -> Vec<u8> {
        self.extra
    }
}

impl<S: Read> Read for UntilHead<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        for (i, &b) in buf[..n].iter().enumerate() {
            self.window = (self.window << 8) | u32::from(b);
            if self.window == 0x0d0a_0d0a || self.window & 0xffff == 0x0a0a {
                self.done = true;
                self.extra = buf[i + 1..n].to_vec();
                return Ok(i + 1);
            }
        }
        Ok(n)
    }
}

impl<S: Write> Write for UntilHead<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` in pieces of `step` through the wrapper.
    fn split(data: &[u8], step: usize) -> (Vec<u8>, Vec<u8>) {
        struct Pieces<'a>(&'a [u8], usize);
        impl Read for Pieces<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut src = Pieces(data, step);
        let mut r = UntilHead::new(&mut src);
        let mut head = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{e}"),
            }
        }
        let mut extra = r.into_extra();
        extra.extend_from_slice(src.0);
        (head, extra)
    }

    #[test]
    fn stops_at_the_end_of_the_head_and_keeps_the_rest() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let mut data = head.to_vec();
        data.extend_from_slice(b"\x81\x02hi");
        for step in [1, 2, 3, 5, 64] {
            let (h, extra) = split(&data, step);
            assert_eq!(h, head, "step {step}");
            assert_eq!(extra, b"\x81\x02hi", "step {step}");
        }
        let (h, extra) = split(b"HTTP/1.1 101 OK\nA: b\n\nrest", 4);
        assert_eq!(h, b"HTTP/1.1 101 OK\nA: b\n\n");
        assert_eq!(extra, b"rest");
    }
}
