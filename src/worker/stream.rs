//! The byte stream under a WebSocket: plain TCP or TLS, counting what the
//! kernel accepted so the worker knows how much output is still queued.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use mio::net::TcpStream;

/// Plain TCP or a TLS session over it.
pub enum Transport {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

/// A transport plus a count of bytes written through it.
pub struct Stream {
    transport: Transport,
    written: u64,
}

impl Stream {
    /// Wraps a transport.
    pub fn new(transport: Transport) -> Stream {
        Stream {
            transport,
            written: 0,
        }
    }

    /// Total bytes the transport accepted for sending.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The TCP socket under the transport.
    pub fn tcp(&self) -> &TcpStream {
        match &self.transport {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.get_ref(),
        }
    }

    /// Shuts down the sending half (after a TLS close_notify, for TLS).
    pub fn shutdown_write(&mut self) {
        if let Transport::Tls(s) = &mut self.transport {
            let _ = s.shutdown();
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.transport {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.transport {
            Transport::Plain(s) => s.write(buf)?,
            Transport::Tls(s) => s.write(buf)?,
        };
        self.written += n as u64;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = match &mut self.transport {
            Transport::Plain(s) => s.write_vectored(bufs)?,
            Transport::Tls(s) => s.write_vectored(bufs)?,
        };
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.transport {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}
