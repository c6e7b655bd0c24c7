//! Why a run could not be set up, with what to do about it.

use std::fmt;
use std::io;

use crate::net::FD_RESERVE;
use crate::procmem::MemError;
use crate::target::UrlError;

/// Why a run could not be set up (exit status 2).
#[derive(Debug)]
pub enum BenchError {
    /// A bad option value.
    Usage(String),
    /// A bad URL.
    Url(UrlError),
    /// Not enough file descriptors for the connections.
    FdLimit {
        /// Connections asked for.
        connections: u32,
        /// The hard open-file limit.
        limit: u64,
    },
    /// The server does not accept TCP connections.
    Unreachable(String, io::Error),
    /// Every connection failed during setup; holds the first error.
    NoConnection(String),
    /// The server's memory cannot be read.
    Memory(MemError),
    /// Creating the event loops or threads failed.
    Setup(io::Error),
    /// Interrupted (SIGINT) before the measurement started.
    Interrupted,
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}"),
            BenchError::Url(e) => write!(f, "{e}"),
            BenchError::FdLimit { connections, limit } => write!(
                f,
                "{connections} connections need about {} open files but the hard limit is \
                 {limit}; run several `wssd bench` processes with at most {} connections \
                 each (and --source-addrs so that their total fits the port range)",
                u64::from(*connections) + FD_RESERVE,
                limit.saturating_sub(FD_RESERVE)
            ),
            BenchError::Unreachable(addr, e) => write!(f, "cannot connect to {addr}: {e}"),
            BenchError::NoConnection(e) => write!(f, "no connection could be set up: {e}"),
            BenchError::Memory(e) => write!(f, "{e}"),
            BenchError::Setup(e) => write!(f, "cannot set up the event loops: {e}"),
            BenchError::Interrupted => write!(f, "interrupted before the measurement started"),
        }
    }
}

impl From<UrlError> for BenchError {
    fn from(e: UrlError) -> Self {
        BenchError::Url(e)
    }
}

impl From<MemError> for BenchError {
    fn from(e: MemError) -> Self {
        BenchError::Memory(e)
    }
}
