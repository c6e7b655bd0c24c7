//! A connection's byte stream: plain TCP for `ws://`, TLS over it for
//! `wss://`, with the TLS handshake driven non-blocking by the event loop
//! (like the daemon's worker does on the server side).

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use mio::net::TcpStream;
use native_tls::{Certificate, HandshakeError, MidHandshakeTlsStream, TlsConnector, TlsStream};

/// What a `wss://` run connects with.
#[derive(Clone)]
pub struct TlsClient {
    /// The configured connector (roots, or no verification).
    pub connector: TlsConnector,
    /// The name sent for SNI and checked against the certificate.
    pub domain: String,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A client for `domain` trusting the system roots plus the PEM
    /// certificates in `ca_file`, or trusting anything when `insecure`.
    pub fn new(domain: &str, ca_file: Option<&Path>, insecure: bool) -> Result<Self, String> {
        let mut builder = TlsConnector::builder();
        if let Some(path) = ca_file {
            let pem = fs::read(path)
                .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
            let certs = Certificate::stack_from_pem(&pem).map_err(|e| {
                format!(
                    "--ca-file {} holds no usable PEM certificate: {e}",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "--ca-file {} holds no PEM certificate",
                    path.display()
                ));
            }
            for cert in certs {
                builder.add_root_certificate(cert);
            }
        }
        if insecure {
            builder.danger_accept_invalid_certs(true);
            builder.danger_accept_invalid_hostnames(true);
        }
        let connector = builder
            .build()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        Ok(TlsClient {
            connector,
            domain: domain.to_string(),
        })
    }
}

/// The byte stream of a connection.
pub enum Stream {
    /// TCP: a `ws://` connection, or a `wss://` one before its TLS
    /// handshake starts.
    Tcp(TcpStream),
    /// A TLS handshake waiting for the socket.
    Handshaking(Box<MidHandshakeTlsStream<TcpStream>>),
    /// An established TLS session.
    Tls(Box<TlsStream<TcpStream>>),
    /// The TLS handshake failed and took the socket with it.
    Failed,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Tcp(_) => "Tcp",
            Stream::Handshaking(_) => "Handshaking",
            Stream::Tls(_) => "Tls",
            Stream::Failed => "Failed",
        })
    }
}

/// Where a TLS handshake step left the stream.
pub enum TlsStep {
    /// The session is established.
    Done,
    /// The handshake waits for the socket.
    Pending,
}

impl Stream {
    /// The TCP socket under the stream (`None` once a handshake failed).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Handshaking(m) => Some(m.get_ref()),
            Stream::Tls(s) => Some(s.get_ref()),
            Stream::Failed => None,
        }
    }

    /// Whether reads may hold data back in a TLS buffer (so a short read
    /// does not mean the socket is drained).
    pub fn buffers_reads(&self) -> bool {
        !matches!(self, Stream::Tcp(_))
    }

    /// Starts (from `Tcp`) or continues (from `Handshaking`) the TLS
    /// handshake; on failure the stream becomes `Failed`.
    pub fn tls_step(&mut self, tls: &TlsClient) -> Result<TlsStep, String> {
        let result = match std::mem::replace(self, Stream::Failed) {
            Stream::Tcp(tcp) => tls.connector.connect(&tls.domain, tcp),
            Stream::Handshaking(mid) => mid.handshake(),
            other => {
                *self = other;
                return Ok(TlsStep::Done);
            }
        };
        match result {
            Ok(session) => {
                *self = Stream::Tls(Box::new(session));
                Ok(TlsStep::Done)
            }
            Err(HandshakeError::WouldBlock(mid)) => {
                *self = Stream::Handshaking(Box::new(mid));
                Ok(TlsStep::Pending)
            }
            Err(HandshakeError::Failure(e)) => Err(e.to_string()),
        }
    }
}

impl AsRawFd for Stream {
    /// The socket's descriptor, -1 once a handshake failed (its socket is
    /// closed and thereby out of the poll set already).
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().map_or(-1, AsRawFd::as_raw_fd)
    }
}

/// The error for I/O on a stream that has no session (yet).
fn not_ready() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no TLS session")
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Handshaking(_) | Stream::Failed => Err(not_ready()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Handshaking(_) | Stream::Failed => Err(not_ready()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Handshaking(_) | Stream::Failed => Ok(()),
        }
    }
}
