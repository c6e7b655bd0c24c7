//! Listening sockets handed down by the process that started this one,
//! instead of bound here: systemd's socket activation (`LISTEN_PID`,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`, fds from 3 on) or a binary upgrade
//! (`WSSD_LISTEN_FDS`, the fds the old master left open for its successor,
//! as nginx's `NGINX` variable, and `WSSD_UPGRADE_FD`, the socket on
//! which this master tells the old one that it is ready).
//!
//! Both are read once, when the master starts; the variables are removed
//! so that nothing this process starts later inherits them. A socket is
//! matched to `server.listen` by the address it is bound to
//! (`getsockname`), never by position.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use log::{info, warn};
use nix::sys::socket::{getsockname, getsockopt, sockopt, SockaddrStorage};

use crate::config::{Config, ConfigError};
use crate::error::Error;

/// Names the listening fds an upgrading master leaves open, `;`-separated.
pub(crate) const LISTEN_FDS_VAR: &str = "WSSD_LISTEN_FDS";
/// Names the fd on which the new master announces it is ready.
pub(crate) const UPGRADE_FD_VAR: &str = "WSSD_UPGRADE_FD";

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;

/// Who handed the sockets down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// systemd socket activation.
    Systemd,
    /// A wssd master upgrading its binary (SIGUSR2).
    Upgrade,
}

impl Origin {
    fn describe(self) -> &'static str {
        match self {
            Origin::Systemd => "systemd passed (socket activation)",
            Origin::Upgrade => "the old master passed (binary upgrade)",
        }
    }
}

/// The sockets this master was given.
pub(crate) struct Inherited {
    origin: Origin,
    listeners: Vec<(SocketAddr, TcpListener)>,
    /// Binary upgrade only: where to say "ready".
    ready: Option<UnixStream>,
    /// A socket was taken: the others are left over (a failed match
    /// says so in its own error).
    matched: bool,
}

impl Inherited {
    /// Reads (and removes) the variables; `None` when neither systemd
    /// nor an old master passed anything.
    pub fn from_env() -> Result<Option<Inherited>, Error> {
        let upgrade = std::env::var(LISTEN_FDS_VAR).ok();
        let ready = std::env::var(UPGRADE_FD_VAR).ok();
        let listen_pid = std::env::var("LISTEN_PID").ok();
        let listen_fds = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        // Edition 2021: safe to call; the master has started no thread.
        for var in [
            LISTEN_FDS_VAR,
            UPGRADE_FD_VAR,
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
        ] {
            std::env::remove_var(var);
        }
        if let Some(fds) = upgrade {
            let fds = parse_fds(&fds).map_err(|e| {
                Error::Runtime(format!("{LISTEN_FDS_VAR}={fds} from the old master: {e}"))
            })?;
            let ready = match ready {
                Some(r) => Some(take_unix(&r).map_err(|e| {
                    Error::Runtime(format!("{UPGRADE_FD_VAR}={r} from the old master: {e}"))
                })?),
                None => None,
            };
            return Ok(Some(Inherited::take_fds(Origin::Upgrade, &fds, ready)?));
        }
        let Some(count) = listen_fds else {
            return Ok(None);
        };
        if listen_pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
            return Ok(None); // meant for another process
        }
        let n: RawFd = count.parse().map_err(|_| {
            Error::Runtime(format!("LISTEN_FDS={count} from systemd: not a number"))
        })?;
        let fds: Vec<RawFd> = (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n).collect();
        if let Some(names) = names {
            info!("systemd passed {n} sockets named {names}");
        }
        Inherited::take_fds(Origin::Systemd, &fds, None).map(Some)
    }

    fn take_fds(
        origin: Origin,
        fds: &[RawFd],
        ready: Option<UnixStream>,
    ) -> Result<Inherited, Error> {
        let mut listeners = Vec::new();
        for &fd in fds {
            let l = take_listener(fd)
                .map_err(|e| Error::Runtime(format!("fd {fd} that {}: {e}", origin.describe())))?;
            listeners.push(l);
        }
        Ok(Inherited {
            origin,
            listeners,
            ready,
            matched: false,
        })
    }

    /// Who passed the sockets.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The passed socket bound where `server.listen` says (for port 0,
    /// any port of that IP); an error naming the key if none is.
    pub fn take(&mut self, config: &Config) -> Result<TcpListener, ConfigError> {
        let want = config.server.listen;
        let pos = self
            .listeners
            .iter()
            .position(|(addr, _)| *addr == want || (want.port() == 0 && addr.ip() == want.ip()));
        match pos {
            Some(i) => {
                self.matched = true;
                Ok(self.listeners.swap_remove(i).1)
            }
            None => {
                let have: Vec<String> = self.listeners.iter().map(|(a, _)| a.to_string()).collect();
                let fix = match self.origin {
                    Origin::Systemd => "make ListenStream= in wssd.socket and `server.listen` name the same address",
                    Origin::Upgrade => "change `listen` with a reload (SIGHUP) after the upgrade, not with it",
                };
                Err(ConfigError::new(
                    &config.source,
                    "server.listen",
                    format!(
                        "{want} is not among the sockets {}, which are on {}: {fix}",
                        self.origin.describe(),
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ),
                ))
            }
        }
    }

    /// Tells the old master (binary upgrade) that this one is ready:
    /// writes this process's pid and closes the socket.
    pub fn announce_ready(&mut self) {
        if let Some(mut s) = self.ready.take() {
            if let Err(e) = writeln!(s, "{}", std::process::id()) {
                warn!("cannot tell the old master that this one is ready: {e}");
            }
        }
    }
}

impl Drop for Inherited {
    fn drop(&mut self) {
        if !self.matched {
            return;
        }
        for (addr, _) in &self.listeners {
            warn!(
                "closing the socket on {addr} that {}: no `listen` names it",
                self.origin.describe()
            );
        }
    }
}

/// `"3;4;"` (as written by [`upgrade_env`]) into fds, each once.
fn parse_fds(text: &str) -> Result<Vec<RawFd>, String> {
    let mut fds = Vec::new();
    for part in text.split(';').filter(|p| !p.is_empty()) {
        let fd: RawFd = part
            .parse()
            .map_err(|_| format!("\"{part}\" is not a file descriptor"))?;
        if fd <= 2 || fds.contains(&fd) {
            return Err(format!("fd {fd} cannot be a listening socket here"));
        }
        fds.push(fd);
    }
    Ok(fds)
}

/// The value of [`LISTEN_FDS_VAR`] naming `fds`.
pub(crate) fn upgrade_env(fds: &[RawFd]) -> String {
    fds.iter().map(|fd| format!("{fd};")).collect()
}

/// Takes ownership of `fd` once it is known to be an open, listening
/// TCP socket; makes it close-on-exec and non-blocking.
fn take_listener(fd: RawFd) -> Result<(SocketAddr, TcpListener), String> {
    let addr = getsockname::<SockaddrStorage>(fd).map_err(|e| format!("not a socket: {e}"))?;
    let addr = addr
        .as_sockaddr_in()
        .map(|a| SocketAddr::V4((*a).into()))
        .or_else(|| addr.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into())))
        .ok_or("not a TCP/IP socket")?;
    let owned = own(fd);
    if !getsockopt(&owned, sockopt::AcceptConn).map_err(|e| e.to_string())? {
        return Err(format!("the socket on {addr} is not listening"));
    }
    let listener = TcpListener::from(owned);
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("non-blocking: {e}"))?;
    set_cloexec(&listener).map_err(|e| format!("close-on-exec: {e}"))?;
    Ok((addr, listener))
}

/// The upgrade's readiness socket, named by `text`.
fn take_unix(text: &str) -> Result<UnixStream, String> {
    let fd: RawFd = text
        .parse()
        .map_err(|_| format!("\"{text}\" is not a file descriptor"))?;
    if fd <= 2 {
        return Err(format!("fd {fd} cannot be the readiness socket"));
    }
    getsockname::<nix::sys::socket::UnixAddr>(fd).map_err(|e| format!("not a Unix socket: {e}"))?;
    let stream = UnixStream::from(own(fd));
    set_cloexec(&stream).map_err(|e| format!("close-on-exec: {e}"))?;
    Ok(stream)
}

/// Takes ownership of an inherited fd.
fn own(fd: RawFd) -> OwnedFd {
    #[allow(unsafe_code)]
    // SAFETY: `fd` was checked to be an open socket (getsockname
    // succeeded), it was passed to this process for it to own, nothing
    // else in the process refers to it, and the caller takes each fd once
    // (parse_fds rejects duplicates, systemd's range has none).
    unsafe {
        OwnedFd::from_raw_fd(fd)
    }
}

fn set_cloexec(fd: &impl std::os::fd::AsFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// Clears close-on-exec on `fds`; used in the forked child of an upgrade,
/// between fork and exec, and so limited to `fcntl` (async-signal-safe).
pub(crate) fn keep_across_exec(fds: &[RawFd]) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    for &fd in fds {
        #[allow(unsafe_code)]
        // SAFETY: the fds are owned by the parent's listeners and the
        // readiness socket, which outlive the spawn; borrowed only here.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_lists_round_trip_and_reject_nonsense() {
        assert_eq!(parse_fds(&upgrade_env(&[3, 7])), Ok(vec![3, 7]));
        assert!(parse_fds("3;3;").is_err());
        assert!(parse_fds("1;").is_err());
        assert!(parse_fds("x;").is_err());
    }
}
