//! The client's settings: [`ClientConfig`] (timeouts, headers,
//! subprotocols, fragmentation, limits, compression), with its defaults
//! and builder methods, and the [`Proxy`] and [`TlsOptions`] it holds.
//! Plain data: what they mean for a connection is decided by the client
//! (`mod.rs`), the request (`handshake.rs`) and the transport
//! (`transport.rs`).

use std::path::PathBuf;
use std::time::Duration;

/// An HTTP CONNECT proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `HOST:PORT` of the proxy (IPv6 as `[ADDR]:PORT`).
    pub address: String,
    /// User and password for `Proxy-Authorization: Basic`.
    pub credentials: Option<(String, String)>,
}

/// TLS settings for `wss://`. The server name is always taken from the URL host
/// (SNI and certificate host name check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with extra CA certificates to trust (may hold several).
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate and host name. For testing only.
    pub accept_invalid_certs: bool,
}

/// Settings of a [`Client`](super::Client); `ClientConfig::default()` works for most servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Limit for each TCP connect attempt (default 10 s; `None` = the system's).
    pub connect_timeout: Option<Duration>,
    /// Limit for waiting for data: a handshake answer, a message, a close reply
    /// (default 30 s; `None` = wait forever).
    pub read_timeout: Option<Duration>,
    /// Limit for a blocked write (default 30 s; `None` = wait forever).
    pub write_timeout: Option<Duration>,
    /// Extra handshake request headers, `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`.
    pub subprotocols: Vec<String>,
    /// Outgoing messages longer than this many bytes are sent as several
    /// frames (continuation frames). `None` = one frame per message.
    pub fragment_size: Option<usize>,
    /// Largest incoming message accepted, in bytes (default 64 MiB; `None` = no limit).
    pub max_message_size: Option<usize>,
    /// Connect through this HTTP CONNECT proxy.
    pub proxy: Option<Proxy>,
    /// TLS settings for `wss://`.
    pub tls: TlsOptions,
    /// Offer permessage-deflate (`permessage-deflate;
    /// client_max_window_bits`, as browsers do); on by default. Messages
    /// are compressed and inflated transparently when the server accepts.
    pub compression: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(30)),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            fragment_size: None,
            max_message_size: Some(64 << 20),
            proxy: None,
            tls: TlsOptions::default(),
            compression: true,
        }
    }
}

impl ClientConfig {
    /// Offers permessage-deflate (`true`, the default) or not.
    #[must_use]
    pub fn with_compression(mut self, offer: bool) -> Self {
        self.compression = offer;
        self
    }

    /// Sets the connect, read and write timeouts at once (php-wss `setTimeout`).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self.read_timeout = Some(timeout);
        self.write_timeout = Some(timeout);
        self
    }

    /// Adds a handshake request header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol.
    #[must_use]
    pub fn with_subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Sets the fragment size for outgoing messages.
    #[must_use]
    pub fn with_fragment_size(mut self, size: usize) -> Self {
        self.fragment_size = Some(size);
        self
    }

    /// Connects through the proxy at `address` (`HOST:PORT`).
    #[must_use]
    pub fn with_proxy(mut self, address: impl Into<String>) -> Self {
        let credentials = self.proxy.take().and_then(|p| p.credentials);
        self.proxy = Some(Proxy {
            address: address.into(),
            credentials,
        });
        self
    }

    /// Sets the proxy credentials (call after [`with_proxy`](Self::with_proxy)).
    #[must_use]
    pub fn with_proxy_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        if let Some(proxy) = &mut self.proxy {
            proxy.credentials = Some((user.into(), password.into()));
        }
        self
    }

    /// Trusts the CA certificates in this PEM file.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Accepts invalid certificates and host names (testing only).
    #[must_use]
    pub fn with_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls.accept_invalid_certs = accept;
        self
    }
}
