//! Supervision: forking a worker into its slot, reaping the dead, and
//! restarting a slot with exponential back-off after quick failures.

use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::Token;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::{Master, State};
use crate::config::Config;
use crate::error::{Error, EXIT_NO_LISTENER, EXIT_PANIC, EXIT_PRIVILEGES};
use crate::limits::Limiter;
use crate::privileges;
use crate::relay::Link;
use crate::signals;
use crate::worker::{self, WorkerSpec};

/// A worker that lived shorter than this counts as a quick failure.
const QUICK_FAILURE: Duration = Duration::from_secs(2);
/// First back-off delay after quick failures; doubles up to the maximum.
pub(super) const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest back-off delay.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Owner ids (columns of the per-address table) per worker slot: the
/// running generation's workers and those of up to three older
/// generations still draining after reloads.
const OWNERS_PER_SLOT: usize = 4;

/// Maps the per-address table for `config`'s `[limits]`, before any fork.
pub(super) fn make_limiter(config: &Config) -> Result<Option<Rc<Limiter>>, Error> {
    let owners = config.server.workers.max(1) * OWNERS_PER_SLOT;
    Limiter::new(&config.limits, owners)
        .map(|l| l.map(Rc::new))
        .map_err(|e| Error::runtime("mapping the shared [limits] table", e))
}

/// A live worker process.
pub(super) struct WorkerProc {
    pub pid: Pid,
    pub index: usize,
    /// Its column in the per-address table, if it has one.
    pub owner: Option<usize>,
    pub generation: u64,
    started: Instant,
    pub link: Option<Link>,
    pub token: Token,
    /// Kept so that the listener outlives the generation's workers.
    _listener: Option<Rc<std::net::TcpListener>>,
}

/// Restart bookkeeping for one worker slot of the current generation.
#[derive(Default)]
pub(super) struct Slot {
    quick_failures: u32,
    pub restart_at: Option<Instant>,
}

impl Master {
    /// Forks worker `index` of the current generation.
    pub(super) fn spawn(&mut self, index: usize) -> Result<(), Error> {
        let owner = self.free_owner();
        let (master_end, worker_end) =
            UnixStream::pair().map_err(|e| Error::runtime("socketpair", e))?;
        // Blocked across the fork: the child unblocks them once its own
        // handlers are installed, so a SIGTERM sent right now is not lost.
        let mask = signals::block(signals::WORKER_SIGNALS)
            .map_err(|e| Error::runtime("sigprocmask", e))?;
        // The one unsafe operation of the crate (`unsafe_code` is denied
        // in Cargo.toml's [lints]).
        #[allow(unsafe_code)]
        // SAFETY: the master is single-threaded (it never starts a thread),
        // so no lock can be held by another thread across the fork.
        let forked = unsafe { fork() };
        if !matches!(forked, Ok(ForkResult::Child)) {
            signals::restore(&mask);
        }
        match forked {
            Err(e) => Err(Error::runtime("fork failed", e)),
            Ok(ForkResult::Child) => {
                drop(master_end);
                let status = self.become_worker(index, owner, worker_end);
                std::process::exit(status);
            }
            Ok(ForkResult::Parent { child }) => {
                drop(worker_end);
                self.adopt(child, index, owner, master_end);
                Ok(())
            }
        }
    }

    /// An owner id no live worker holds (ids of dead workers were
    /// forgotten when they were reaped); `None` without limits, or when
    /// every id is taken by draining generations (that worker then runs
    /// without the limits, and says so).
    fn free_owner(&self) -> Option<usize> {
        let limiter = self.limiter.as_ref()?;
        let free = (0..limiter.owners()).find(|o| self.workers.iter().all(|w| w.owner != Some(*o)));
        if free.is_none() {
            warn!("every [limits] owner id is held by a draining generation; the next worker does not enforce [limits]");
        }
        free
    }

    /// Records a forked worker and registers its relay link.
    fn adopt(&mut self, pid: Pid, index: usize, owner: Option<usize>, link: UnixStream) {
        let token = Token(self.next_token);
        self.next_token += 1;
        let link = match Link::new(link) {
            Ok(l) => {
                if let Err(e) = l.register(self.poll.registry(), token) {
                    warn!("worker {index}: relay link not registered: {e}");
                }
                Some(l)
            }
            Err(e) => {
                warn!("worker {index}: no relay link: {e}");
                None
            }
        };
        info!(
            "worker {index} pid {pid} started (generation {})",
            self.current.number
        );
        self.workers.push(WorkerProc {
            pid,
            index,
            owner,
            generation: self.current.number,
            started: Instant::now(),
            link,
            token,
            _listener: self.current.listener.clone(),
        });
    }

    /// Runs in the child right after fork: sheds the master's state and
    /// runs the worker loop. Returns the exit status.
    fn become_worker(&mut self, index: usize, owner: Option<usize>, link: UnixStream) -> i32 {
        crate::logging::set_worker_role(index);
        crate::proctitle::set(&format!(
            "wssd: worker process {index} (generation {})",
            self.current.number
        ));
        if let Some(s) = self.signals.take() {
            s.uninstall();
        }
        // The siblings' relay sockets and older generations' listeners are
        // the master's business; holding them would keep them open. So is
        // a binary upgrade in progress.
        self.workers.clear();
        self.upgrade = None;
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGTERM)) {
            warn!("worker {index}: cannot ask to be stopped with the master: {e}");
        }
        if nix::unistd::getppid() == Pid::from_raw(1) {
            return 0; // the master died between fork and prctl
        }
        if let Some(ids) = self.current.ids {
            if let Err(e) = privileges::apply(ids) {
                error!("worker {index}: refusing to run: cannot switch to user/group from the config: {e}");
                return EXIT_PRIVILEGES;
            }
        }
        // Take the listener out of the inherited state, so that the
        // worker's own handle is the only one in this process: closing it
        // when the worker retires really closes it here.
        let listener = match self.current.listener.take().map(Rc::try_unwrap) {
            Some(Ok(l)) => l,
            Some(Err(shared)) => match shared.try_clone() {
                Ok(l) => l,
                Err(e) => {
                    error!("worker {index}: cannot take the listening socket: {e}");
                    return EXIT_NO_LISTENER;
                }
            },
            None => {
                error!("worker {index}: no listening socket");
                return EXIT_NO_LISTENER;
            }
        };
        let spec = WorkerSpec {
            index,
            config: Rc::clone(&self.current.config),
            app: Rc::clone(&self.current.app),
            listener,
            relay: Some(link),
            tls: self.current.tls.clone(),
            limits: self
                .limiter
                .clone()
                .zip(owner)
                .map(|(l, o)| worker::Limits::new(l, o)),
        };
        // A panic must end this process here, not unwind into the
        // master's code that the child inherited.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(spec))).unwrap_or_else(
            |_| {
                error!("worker {index} panicked outside a handler; exiting");
                EXIT_PANIC
            },
        )
    }

    /// Reaps every exited child and schedules replacements.
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.on_exit(pid, &status);
                    }
                }
            }
        }
    }

    /// A worker exited: forget it and, if it belongs to the running
    /// generation, schedule its slot's restart.
    fn on_exit(&mut self, pid: Pid, status: &WaitStatus) {
        if self.upgrade_exited(pid, &describe(status)) {
            return;
        }
        let Some(pos) = self.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        let w = self.workers.swap_remove(pos);
        // Its connections are gone with it: free its column before the id
        // is handed out again.
        if let (Some(limiter), Some(owner)) = (&self.limiter, w.owner) {
            limiter.forget_owner(owner);
        }
        if let Some(link) = &w.link {
            link.deregister(self.poll.registry());
        }
        let reason = describe(status);
        let lived = w.started.elapsed();
        let current = w.generation == self.current.number;
        if self.state != State::Running || !current {
            info!("worker {} pid {pid} exited: {reason}", w.index);
            return;
        }
        let Some(slot) = self.slots.get_mut(w.index) else {
            return;
        };
        if lived < QUICK_FAILURE {
            slot.quick_failures += 1;
        } else {
            slot.quick_failures = 0;
        }
        let delay = backoff(slot.quick_failures);
        slot.restart_at = Some(Instant::now() + delay);
        warn!(
            "worker {} pid {pid} exited: {reason}; restarting it in {} ms",
            w.index,
            delay.as_millis()
        );
    }

    /// Forks the replacements whose back-off has passed.
    pub(super) fn restart_due(&mut self) {
        if self.state != State::Running {
            return;
        }
        let now = Instant::now();
        for index in 0..self.slots.len() {
            if self.slots[index].restart_at.is_some_and(|t| t <= now) {
                self.slots[index].restart_at = None;
                if let Err(e) = self.spawn(index) {
                    error!("{e}; trying again");
                    self.slots[index].restart_at = Some(now + BACKOFF_MAX);
                }
            }
        }
    }

    /// Sends `sig` to the workers of `generation`, or to all.
    pub(super) fn signal_workers(&self, generation: Option<u64>, sig: Signal) {
        for w in &self.workers {
            if generation.is_none_or(|g| w.generation == g) {
                let _ = kill(w.pid, sig);
            }
        }
    }

    /// Closes this master's handles on the listening sockets (a retiring
    /// master's workers close their own).
    pub(super) fn release_listeners(&mut self) {
        self.current.listener = None;
        for w in &mut self.workers {
            w._listener = None;
        }
    }

    /// Kills every worker and waits for each.
    pub(super) fn kill_all(&mut self) {
        self.signal_workers(None, Signal::SIGKILL);
        for w in std::mem::take(&mut self.workers) {
            let status = waitpid(w.pid, None);
            if let Ok(s) = status {
                info!("worker {} pid {} exited: {}", w.index, w.pid, describe(&s));
            }
        }
    }
}

/// Back-off before restarting a slot after `quick_failures` quick deaths.
fn backoff(quick_failures: u32) -> Duration {
    if quick_failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (quick_failures - 1).min(16);
    (BACKOFF_START * factor).min(BACKOFF_MAX)
}

/// "exited with status 3", "killed by SIGKILL", "killed by SIGSEGV (core dumped)".
fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, core) => {
            format!(
                "killed by {sig}{}",
                if *core { " (core dumped)" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(8), Duration::from_secs(10));
        assert_eq!(backoff(40), Duration::from_secs(10));
    }
}
