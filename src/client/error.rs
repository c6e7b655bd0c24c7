//! [`ClientError`]: everything that can go wrong, worded for the user.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::message::CloseCode;

/// An error of the client; its `Display` says what happened and what to try.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL could not be parsed.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value or an argument is unusable.
    InvalidConfig(String),
    /// The host name did not resolve to any address.
    Resolve {
        /// The name that was looked up.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Nothing listens at the address (TCP connection refused).
    ConnectionRefused {
        /// `"server"` or `"proxy"`.
        peer: &'static str,
        /// The address that refused.
        addr: String,
    },
    /// Another failure while opening the TCP connection.
    Connect {
        /// `"server"` or `"proxy"`.
        peer: &'static str,
        /// The address that failed.
        addr: String,
        /// The system error.
        source: io::Error,
    },
    /// An operation did not finish within its timeout.
    Timeout {
        /// What the client was doing, e.g. "waiting for a message".
        what: String,
        /// The timeout that elapsed, if known.
        after: Option<Duration>,
    },
    /// The proxy answered the CONNECT with 401 or 407.
    ProxyAuth {
        /// The proxy address.
        proxy: String,
        /// 401 or 407.
        status: u16,
        /// The status line's reason phrase.
        reason: String,
        /// Whether credentials were sent (then they were wrong).
        credentials_sent: bool,
    },
    /// The proxy answered the CONNECT with a status other than 2xx/401/407.
    ProxyStatus {
        /// The proxy address.
        proxy: String,
        /// The status code.
        status: u16,
        /// The status line's reason phrase.
        reason: String,
    },
    /// The proxy's answer was not HTTP or the proxy hung up.
    ProxyProtocol {
        /// The proxy address.
        proxy: String,
        /// What went wrong.
        detail: String,
    },
    /// A CA file could not be read or holds no certificate.
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The TLS handshake failed; `verification` when the certificate was rejected.
    Tls {
        /// The server name checked against the certificate.
        host: String,
        /// `true` if the failure is a certificate verification failure.
        verification: bool,
        /// The TLS library's message.
        detail: String,
    },
    /// The server answered the WebSocket handshake with an HTTP status instead of 101.
    HandshakeStatus {
        /// The HTTP status code.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The start of the response body, if any.
        body: String,
    },
    /// The handshake failed for another reason (bad response, subprotocol mismatch...).
    Handshake(String),
    /// The connection is closed; `code` is the close code received from the peer
    /// (1005 when the close frame carried none, 1006 when there was no close frame).
    Closed {
        /// The peer's close code.
        code: CloseCode,
        /// The peer's close reason.
        reason: String,
    },
    /// An incoming message is larger than `max_message_size`.
    MessageTooLarge {
        /// Size of the message (so far).
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The peer broke the WebSocket protocol.
    Protocol(String),
    /// A reconnecting client gave up after `attempts` failed attempts.
    ReconnectFailed {
        /// Attempts made since the connection was lost.
        attempts: u32,
        /// The last attempt's error.
        last: Box<ClientError>,
    },
    /// A message was not sent because the connection was lost while (or
    /// before) sending it; it may or may not have reached the server.
    SendLost {
        /// Why the connection was lost.
        cause: Box<ClientError>,
    },
    /// Another I/O error on the established connection.
    Io(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClientError::*;
        match self {
            InvalidUrl { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            InvalidConfig(msg) => write!(f, "invalid configuration: {msg}"),
            Resolve { host, source } => {
                write!(f, "cannot resolve host name {host:?}: {source}: check the spelling")
            }
            ConnectionRefused { peer: "proxy", addr } => {
                write!(f, "connection refused by proxy {addr}: is the proxy running?")
            }
            ConnectionRefused { addr, .. } => {
                write!(f, "connection refused by {addr}: is the server running?")
            }
            Connect { peer, addr, source } => write!(f, "cannot connect to {peer} {addr}: {source}"),
            Timeout { what, after: Some(after) } => write!(
                f,
                "timed out after {} while {what}: is the peer responding? (raise the timeout)",
                human_duration(*after)
            ),
            Timeout { what, after: None } => write!(f, "timed out while {what}"),
            ProxyAuth { proxy, status, reason, credentials_sent } => {
                let what = if *credentials_sent {
                    "proxy authentication failed: check the user and password given with --proxy-auth"
                } else {
                    "proxy authentication required: give credentials with --proxy-auth USER:PASS"
                };
                write!(f, "proxy {proxy} answered {status} {reason}: {what}")
            }
            ProxyStatus { proxy, status: 403, reason } => write!(
                f,
                "proxy {proxy} answered 403 {reason}: the proxy forbids this client or target (check its Allow/ConnectPort rules)"
            ),
            ProxyStatus { proxy, status, reason } => {
                write!(f, "proxy {proxy} refused the tunnel: it answered {status} {reason}")
            }
            ProxyProtocol { proxy, detail } => write!(f, "proxy {proxy}: {detail}"),
            CaFile { path, detail } => write!(f, "CA file {path}: {detail}"),
            Tls { host, verification: true, detail } if detail.contains("mismatch") => write!(
                f,
                "TLS certificate verification failed: the certificate is not valid for {host} ({detail}): connect with a name the certificate lists, or --insecure for testing"
            ),
            Tls { host, verification: true, detail } => write!(
                f,
                "TLS certificate verification failed for {host}: {detail}: pass the issuing CA with --ca-file, or --insecure for testing"
            ),
            Tls { host, detail, .. } => write!(
                f,
                "TLS handshake with {host} failed: {detail} (does the server speak TLS on this port? use ws:// if not)"
            ),
            HandshakeStatus { status, reason, body } => {
                write!(f, "server answered the WebSocket handshake with HTTP {status} {reason}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                match status {
                    401 | 403 => write!(f, " (check the credentials and --header values)"),
                    404 => write!(f, " (is the URL path right?)"),
                    _ => Ok(()),
                }
            }
            Handshake(msg) => write!(f, "WebSocket handshake failed: {msg}"),
            Closed { code, reason } if reason.is_empty() => {
                write!(f, "connection closed by the server (code {code})")
            }
            Closed { code, reason } => {
                write!(f, "connection closed by the server (code {code}: {reason})")
            }
            MessageTooLarge { size, max } => write!(
                f,
                "incoming message too large: {size} bytes, the limit is {max} (raise max_message_size)"
            ),
            Protocol(msg) => write!(f, "WebSocket protocol error: {msg}"),
            ReconnectFailed { attempts, last } => write!(
                f,
                "gave up reconnecting after {attempts} attempts (raise the attempt limit?); last error: {last}"
            ),
            SendLost { cause } => write!(
                f,
                "message lost: the connection broke while sending it ({cause}); it was not re-sent"
            ),
            Io(err) => write!(f, "connection error: {err}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Resolve { source, .. } | ClientError::Connect { source, .. } => {
                Some(source)
            }
            ClientError::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// `5s`, `1.5s`, `250ms`.
fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Whether an I/O error is a read/write timeout of a socket.
pub(crate) fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether an I/O error means the peer went away.
pub(crate) fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
