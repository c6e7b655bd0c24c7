//! Binary upgrade (SIGUSR2), the old master's side: start the new binary
//! with the same arguments and the listening socket inherited, wait for
//! it to say it is ready, then retire this master's workers as a reload
//! retires an old generation and exit once they are gone. If the new
//! master exits, cannot be started, or is not ready in time, this master
//! keeps serving (rollback) and the pid file is put back.
//!
//! The pid file moves aside to `PIDFILE.oldbin` while the new master
//! starts (it writes its own), as with nginx.
//!
//! Under systemd the old master reports each step in `STATUS=`
//! (`binary upgrade: new master pid N starting`, `binary upgrade failed:
//! ...`) and hands the unit over with `MAINPID=`: `systemctl status`
//! shows how an upgrade went, and the Debian package's upgrade script
//! (scripts/deb/binary-upgrade) tells a failed upgrade from a slow one.

use std::ffi::OsString;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Master, State, KILL_SLACK};
use crate::inherit::{self, LISTEN_FDS_VAR, UPGRADE_FD_VAR};
use crate::sdnotify;

/// The poll token of the readiness socket.
pub(super) const UPGRADE: Token = Token(1);
/// How long the new master has to become ready.
pub(super) const UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// A new master that has been started and is not ready yet.
pub(super) struct Upgrade {
    pid: Pid,
    ready: UnixStream,
    got: Vec<u8>,
    /// The new master closed its end without announcing itself.
    closed: bool,
    pub deadline: Instant,
    /// The pid file and where it was moved to.
    moved: Option<(PathBuf, PathBuf)>,
}

/// What the command line of the running master was, for the new one.
pub(super) struct Exec {
    /// `argv[0]` and the arguments, captured at start.
    pub argv: Vec<OsString>,
}

impl Exec {
    /// `wssd: master process --config /etc/wssd/wssd.toml`
    pub fn master_title(&self) -> String {
        let mut title = String::from("wssd: master process");
        for arg in self.argv.iter().skip(1) {
            title.push(' ');
            title.push_str(&arg.to_string_lossy());
        }
        title
    }
}

impl Master {
    /// SIGUSR2: starts the new master, unless that would start a second
    /// upgrade over one in progress (logged, as nginx does).
    pub(super) fn start_upgrade(&mut self) {
        if let Some(why) = self.upgrade_refused() {
            warn!("SIGUSR2 ignored: {why}");
            return;
        }
        match self.spawn_new_master() {
            Ok(u) => {
                info!(
                    "SIGUSR2: started new master pid {}; waiting up to {:?} for it to be ready",
                    u.pid, UPGRADE_TIMEOUT
                );
                sdnotify::notify(&format!(
                    "STATUS=binary upgrade: new master pid {} starting",
                    u.pid
                ));
                self.upgrade = Some(u);
            }
            Err(e) => {
                error!("binary upgrade failed, still serving: {e}");
                sdnotify::notify(&format!(
                    "STATUS=binary upgrade failed: {e}; pid {} keeps serving",
                    std::process::id()
                ));
            }
        }
    }

    /// Why a binary upgrade cannot start now, if it cannot: this master
    /// is stopping (or retiring after handing over), a new master it
    /// started is not ready yet, or an old master is still retiring,
    /// whose `PIDFILE.oldbin` the upgrade would overwrite (and whose
    /// workers would then have two successors).
    fn upgrade_refused(&self) -> Option<String> {
        if self.state != State::Running {
            return Some(
                "this master is stopping (draining, or retiring after a binary upgrade)".into(),
            );
        }
        if let Some(u) = &self.upgrade {
            return Some(format!(
                "new master pid {} is still starting; wait for it to be ready or to fail",
                u.pid
            ));
        }
        let again = "send SIGUSR2 again once it has exited";
        if let Some(old) = self.upgraded_from {
            // Its successor is its child: while it runs, it is our parent.
            if nix::unistd::getppid() == old {
                return Some(format!(
                    "the old master pid {old}, which started this one, is still retiring its workers; {again}"
                ));
            }
        }
        let oldbin = oldbin_path(self.pid_file.as_deref()?);
        let pid = std::fs::read_to_string(&oldbin)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()?;
        let pid = Pid::from_raw(pid);
        let running = pid.as_raw() > 0
            && pid != nix::unistd::getpid()
            && !matches!(kill(pid, None), Err(nix::errno::Errno::ESRCH))
            && runs_this_program(pid);
        running.then(|| {
            format!(
                "{} names pid {pid}, an old master that is still running; {again}",
                oldbin.display()
            )
        })
    }

    fn spawn_new_master(&mut self) -> Result<Upgrade, String> {
        let Some(listener) = self.current.listener.as_ref() else {
            return Err("no listening socket to hand over".into());
        };
        let binary = self
            .current
            .config
            .server
            .upgrade_binary
            .clone()
            .map(OsString::from)
            .or_else(|| self.exec.argv.first().cloned())
            .ok_or("the path this master was started with is unknown; set server.upgrade_binary")?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("readiness socket: {e}"))?;
        ours.set_nonblocking(true)
            .map_err(|e| format!("readiness socket: {e}"))?;
        // `server.listen` first, then the status listener (the order
        // `Inherited::take_addr` relies on for port 0).
        let mut passed = vec![listener.as_raw_fd()];
        passed.extend(self.status.as_ref().map(|s| s.listener_fd()));
        let mut keep = passed.clone();
        keep.push(theirs.as_raw_fd());
        let moved = self.pid_file.as_deref().map(move_aside).transpose()?;
        let mut cmd = Command::new(&binary);
        cmd.args(self.exec.argv.iter().skip(1))
            .env(LISTEN_FDS_VAR, inherit::upgrade_env(&passed))
            .env(UPGRADE_FD_VAR, theirs.as_raw_fd().to_string());
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec and
        // calls only fcntl (async-signal-safe) on fds this process owns;
        // it allocates nothing (`keep` is built before and moved in).
        unsafe {
            cmd.pre_exec(move || inherit::keep_across_exec(&keep));
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if let Some((pid_file, oldbin)) = &moved {
                    put_back(pid_file, oldbin);
                }
                return Err(format!(
                    "cannot start {}: {e}",
                    Path::new(&binary).display()
                ));
            }
        };
        drop(theirs);
        let pid = Pid::from_raw(child.id() as i32);
        // Reaped by the master's own waitpid loop, like its workers.
        drop(child);
        let watched = self.poll.registry().register(
            &mut SourceFd(&ours.as_raw_fd()),
            UPGRADE,
            Interest::READABLE,
        );
        if let Err(e) = watched {
            // Without the socket watched it could never take over.
            let _ = kill(pid, Signal::SIGTERM);
            if let Some((pid_file, oldbin)) = &moved {
                put_back(pid_file, oldbin);
            }
            return Err(format!(
                "watching the readiness socket: {e} (sent new master pid {pid} SIGTERM)"
            ));
        }
        Ok(Upgrade {
            pid,
            ready: ours,
            got: Vec::new(),
            closed: false,
            deadline: Instant::now() + UPGRADE_TIMEOUT,
            moved,
        })
    }

    /// The readiness socket is readable: the new master's pid, or EOF.
    pub(super) fn on_upgrade_event(&mut self) {
        let Some(u) = self.upgrade.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        let eof = loop {
            match u.ready.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => u.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if u.got.ends_with(b"\n") {
            let announced = String::from_utf8_lossy(&u.got).trim().to_string();
            if announced == u.pid.to_string() {
                self.hand_over();
            } else {
                let _ = kill(u.pid, Signal::SIGTERM);
                self.roll_back(&format!(
                    "announced \"{announced}\" instead of its pid (sent it SIGTERM)"
                ));
            }
        } else if eof && !u.closed {
            // Most likely it is exiting: its exit status (SIGCHLD) says
            // why better than this; the deadline covers the rest.
            u.closed = true;
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&u.ready.as_raw_fd()));
            warn!(
                "new master pid {} closed the readiness socket before it was ready",
                u.pid
            );
        }
    }

    /// A child exited: if it is the new master, the upgrade failed.
    pub(super) fn upgrade_exited(&mut self, pid: Pid, reason: &str) -> bool {
        if self.upgrade.as_ref().is_some_and(|u| u.pid == pid) {
            self.roll_back(reason);
            return true;
        }
        false
    }

    /// Gives up on a new master that is not ready in time.
    pub(super) fn enforce_upgrade_deadline(&mut self) {
        let Some(u) = &self.upgrade else { return };
        if Instant::now() >= u.deadline {
            let _ = kill(u.pid, Signal::SIGTERM);
            self.roll_back(&format!(
                "was not ready within {UPGRADE_TIMEOUT:?} (sent it SIGTERM)"
            ));
        }
    }

    /// The master is stopping before the new one was ready: stop that too.
    pub(super) fn abandon_upgrade(&mut self) {
        if let Some(u) = &self.upgrade {
            let _ = kill(u.pid, Signal::SIGTERM);
            self.roll_back("was stopped (sent it SIGTERM): this master is stopping");
        }
    }

    fn roll_back(&mut self, why: &str) {
        let Some(u) = self.upgrade.take() else { return };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&u.ready.as_raw_fd()));
        if let Some((pid_file, oldbin)) = &u.moved {
            put_back(pid_file, oldbin);
        }
        error!(
            "binary upgrade failed: new master pid {} {why}; this master (pid {}) keeps serving",
            u.pid,
            std::process::id()
        );
        // What `systemctl status` shows, and what the Debian package's
        // binary-upgrade script waits for (docs/operations.md).
        sdnotify::notify(&format!(
            "STATUS=binary upgrade failed: new master pid {} {why}; pid {} keeps serving",
            u.pid,
            std::process::id()
        ));
    }

    /// The new master is ready: tell systemd it is the main process now,
    /// retire every worker of this master as a reload retires a
    /// generation, and exit once they are gone.
    fn hand_over(&mut self) {
        let Some(u) = self.upgrade.take() else { return };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&u.ready.as_raw_fd()));
        sdnotify::notify(&format!(
            "MAINPID={}\nREADY=1\nSTATUS=listening on {}; upgraded from pid {}",
            u.pid,
            self.current.addr,
            std::process::id()
        ));
        self.pid_file = u.moved.map(|(_, oldbin)| oldbin);
        let drain = self.current.config.server.drain_timeout;
        info!(
            "new master pid {} is ready: retiring {} workers (draining up to {drain:?}), then exiting",
            u.pid,
            self.workers.len()
        );
        self.state = State::Stopping {
            kill_at: Instant::now() + drain + KILL_SLACK,
        };
        for slot in &mut self.slots {
            slot.restart_at = None;
        }
        self.release_listeners();
        self.signal_workers(None, Signal::SIGQUIT);
        crate::proctitle::set(&format!(
            "{} (old binary, retiring)",
            self.exec.master_title()
        ));
    }
}

/// Whether `pid` runs this program, by the file name of its executable
/// (`/proc/PID/exe`; a replaced binary reads `NAME (deleted)`). The pid
/// of an old master that died may have been reused by an unrelated
/// process, which must not block upgrades forever. When it cannot be
/// told (another user's process, no /proc), it is assumed to: refusing
/// an upgrade is the safe side.
fn runs_this_program(pid: Pid) -> bool {
    match (
        exe_name(&format!("/proc/{pid}/exe")),
        exe_name("/proc/self/exe"),
    ) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => true,
    }
}

fn exe_name(link: &str) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    let name = target.file_name()?.to_string_lossy();
    Some(name.trim_end_matches(" (deleted)").to_string())
}

/// `PIDFILE.oldbin`.
fn oldbin_path(pid_file: &Path) -> PathBuf {
    let mut oldbin = pid_file.as_os_str().to_owned();
    oldbin.push(".oldbin");
    PathBuf::from(oldbin)
}

/// Moves the pid file to `PIDFILE.oldbin`; returns both paths.
fn move_aside(pid_file: &Path) -> Result<(PathBuf, PathBuf), String> {
    let oldbin = oldbin_path(pid_file);
    std::fs::rename(pid_file, &oldbin).map_err(|e| {
        format!(
            "cannot move {} to {}: {e}",
            pid_file.display(),
            oldbin.display()
        )
    })?;
    Ok((pid_file.to_path_buf(), oldbin))
}

/// Puts the pid file back after a failed upgrade.
fn put_back(pid_file: &Path, oldbin: &Path) {
    if let Err(e) = std::fs::rename(oldbin, pid_file) {
        error!(
            "cannot move {} back to {}: {e}",
            oldbin.display(),
            pid_file.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_reused_by_another_program_is_not_an_old_master() {
        assert!(runs_this_program(nix::unistd::getpid()));
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = Pid::from_raw(other.id() as i32);
        let verdict = runs_this_program(pid);
        let _ = other.kill();
        let _ = other.wait();
        assert!(!verdict, "sleep is not this program");
    }
}
