//! Signals delivered through a self-pipe, so that the master's and the
//! workers' event loops wake on them like on any other event.
//!
//! Each watched signal sets its own flag and writes a byte to one pipe
//! that the event loop polls; the loop then drains the pipe and takes the
//! flags. Nothing but an atomic store and a `write(2)` runs in the
//! handler.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use signal_hook::SigId;

/// The signals one process watches, and the pipe that announces them.
pub struct SignalPipe {
    reader: UnixStream,
    flags: Vec<(i32, Arc<AtomicBool>)>,
    ids: Vec<SigId>,
}

impl SignalPipe {
    /// Installs handlers for `signals`.
    pub fn new(signals: &[i32]) -> io::Result<SignalPipe> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for &sig in signals {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(signal_hook::flag::register(sig, Arc::clone(&flag))?);
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                writer.try_clone()?,
            )?);
            flags.push((sig, flag));
        }
        Ok(SignalPipe { reader, flags, ids })
    }

    /// Registers the pipe with a poller under `token`.
    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.reader.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Drains the pipe and returns the signals that arrived since the last
    /// call, each once, in the order they were registered.
    pub fn take(&mut self) -> Vec<i32> {
        let mut buf = [0u8; 64];
        while matches!((&self.reader).read(&mut buf), Ok(n) if n > 0) {}
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(sig, _)| *sig)
            .collect()
    }

    /// Removes the handlers (used in a freshly forked worker, which then
    /// installs its own).
    pub fn uninstall(self) {
        for id in self.ids {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The name of a signal such as `SIGTERM`, or its number.
pub fn name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig)
        .map(str::to_string)
        .unwrap_or_else(|| format!("signal {sig}"))
}

/// The signals a worker handles itself; blocked across `fork` so that
/// none is lost between the fork and the worker's own handlers.
pub const WORKER_SIGNALS: &[i32] = &[
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGUSR1,
];

fn set_of(signals: &[i32]) -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    for &s in signals {
        if let Ok(sig) = nix::sys::signal::Signal::try_from(s) {
            set.add(sig);
        }
    }
    set
}

/// Blocks `signals`; returns the previous mask for [`restore`].
pub fn block(signals: &[i32]) -> io::Result<nix::sys::signal::SigSet> {
    let mut previous = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&set_of(signals)),
        Some(&mut previous),
    )?;
    Ok(previous)
}

/// Puts back a mask returned by [`block`].
pub fn restore(previous: &nix::sys::signal::SigSet) {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(previous),
        None,
    );
}

/// Unblocks `signals`: pending ones are delivered now, to the handlers in
/// place.
pub fn unblock(signals: &[i32]) {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
        Some(&set_of(signals)),
        None,
    );
}
