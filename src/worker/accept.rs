//! The accept gate: the shared listening socket, registered with the
//! worker's poller while the worker takes connections, deregistered while
//! it is full or backing off, and closed for good when it stops serving.

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// What one accept gave.
pub(super) enum Accepted {
    /// A new connection.
    Conn(TcpStream, SocketAddr),
    /// No connection waiting (or the gate is closed).
    None,
    /// Accepting failed (out of descriptors, most likely).
    Failed(io::Error),
}

/// The listening socket and whether it is registered.
pub(super) struct Gate {
    listener: Option<TcpListener>,
    open: bool,
    token: Token,
}

impl Gate {
    /// Registers `listener` under `token`, open.
    pub fn new(
        listener: std::net::TcpListener,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Gate> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Gate {
            listener: Some(listener),
            open: true,
            token,
        })
    }

    /// Whether connections are being taken.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Takes one waiting connection.
    pub fn accept(&self) -> Accepted {
        let Some(listener) = self.listener.as_ref().filter(|_| self.open) else {
            return Accepted::None;
        };
        loop {
            return match listener.accept() {
                Ok((stream, peer)) => Accepted::Conn(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accepted::None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Accepted::Failed(e),
            };
        }
    }

    /// Stops taking connections for now (full, or backing off).
    pub fn pause(&mut self, registry: &Registry) {
        if let Some(l) = self.listener.as_mut() {
            let _ = registry.deregister(l);
        }
        self.open = false;
    }

    /// Takes connections again; true if it reopened (connections may have
    /// queued meanwhile and their readiness edge is spent: accept soon).
    pub fn resume(&mut self, registry: &Registry) -> bool {
        if self.open {
            return false;
        }
        let Some(l) = self.listener.as_mut() else {
            return false;
        };
        self.open = registry.register(l, self.token, Interest::READABLE).is_ok();
        self.open
    }

    /// Stops for good and closes our descriptor of the listening socket.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut l) = self.listener.take() {
            let _ = registry.deregister(&mut l);
        }
        self.open = false;
    }
}
