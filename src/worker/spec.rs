//! What the master hands a freshly forked worker: its slot, the
//! configuration generation and routes, the listening socket and the
//! worker's ends of what it shares with the master. Plain data, so that
//! the master needs nothing else of the worker.

use std::rc::Rc;

use super::admit::Limits;
use crate::app::App;
use crate::config::Config;
use crate::stats::WorkerSlot;

/// What the master hands a freshly forked worker.
pub(crate) struct WorkerSpec {
    /// The worker's slot number, kept across restarts.
    pub index: usize,
    /// The configuration generation.
    pub config: Rc<Config>,
    /// Routes and handler factories.
    pub app: Rc<App>,
    /// The listening socket, shared with the siblings; the worker owns
    /// its descriptor and closes it when it stops accepting.
    pub listener: std::net::TcpListener,
    /// The worker's end of its relay link to the master.
    pub relay: Option<std::os::unix::net::UnixStream>,
    /// TLS acceptor when `[tls]` is configured.
    pub tls: Option<crate::tls::Acceptor>,
    /// This worker's counters in the master's shared table.
    pub stats: Option<&'static WorkerSlot>,
    /// The per-address limits and this worker's owner id in them, when
    /// `[limits]` sets any.
    pub limits: Option<Limits>,
}
