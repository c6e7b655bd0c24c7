//! Ports: free, closed, and a server that accepts but never answers.

use std::net::TcpListener;

/// A port that was free a moment ago (for programs that cannot bind port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// A port on which nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    free_port()
}

/// A TCP server that accepts connections and never answers (for timeouts):
/// the kernel completes the connections through the listen backlog.
pub struct SilentServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _listener: TcpListener,
}

impl SilentServer {
    /// Binds 127.0.0.1:0.
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        SilentServer {
            port,
            _listener: listener,
        }
    }
}
