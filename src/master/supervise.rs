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

/// What a child process of the master is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A worker serving connections.
    Worker,
    /// The cluster helper, talking to Redis (`crate::cluster`).
    Cluster,
}

/// A live worker process (or the cluster helper, which the master treats
/// as one more relay peer).
pub(super) struct WorkerProc {
    pub pid: Pid,
    pub kind: Kind,
    pub index: usize,
    /// Its slot in the shared counters table, if it got one.
    pub stat_slot: Option<usize>,
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
    /// The counters slot of this slot's last worker, reused by its
    /// replacement so that the figures run on.
    pub stat_slot: Option<usize>,
}

impl Master {
    /// Forks worker `index` of the current generation.
    pub(super) fn spawn(&mut self, index: usize) -> Result<(), Error> {
        self.spawn_kind(Kind::Worker, index)
    }

    /// Picks the counters slot for worker `index`: its predecessor's (a
    /// restart) or the first free one; resets it before the fork.
    fn take_stat_slot(&mut self, index: usize) -> Option<usize> {
        let table = self.stats?;
        let previous = self.slots.get(index).and_then(|s| s.stat_slot);
        let used = |i: usize| self.workers.iter().any(|w| w.stat_slot == Some(i));
        let (slot, restart) = match previous {
            Some(i) if !used(i) => (i, true),
            _ => {
                let i = (0..crate::stats::MAX_SLOTS).find(|i| !used(*i))?;
                (i, false)
            }
        };
        table.claim(slot, 0, self.current.number, index, restart);
        if let Some(s) = self.slots.get_mut(index) {
            s.stat_slot = Some(slot);
        }
        Some(slot)
    }

    /// Forks a worker (slot `index`) or the cluster helper.
    pub(super) fn spawn_kind(&mut self, kind: Kind, index: usize) -> Result<(), Error> {
        let stat_slot = match kind {
            Kind::Worker => self.take_stat_slot(index),
            Kind::Cluster => None,
        };
        let owner = match kind {
            Kind::Worker => self.free_owner(),
            Kind::Cluster => None,
        };
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
                crate::logging::forked();
                drop(master_end);
                let status = match kind {
                    Kind::Worker => self.become_worker(index, owner, worker_end, stat_slot),
                    Kind::Cluster => self.become_cluster(worker_end),
                };
                std::process::exit(status);
            }
            Ok(ForkResult::Parent { child }) => {
                drop(worker_end);
                if let (Some(table), Some(i)) = (self.stats, stat_slot) {
                    table.slots[i]
                        .pid
                        .store(child.as_raw() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                self.adopt(child, kind, index, stat_slot, owner, master_end);
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
    fn adopt(
        &mut self,
        pid: Pid,
        kind: Kind,
        index: usize,
        stat_slot: Option<usize>,
        owner: Option<usize>,
        link: UnixStream,
    ) {
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
        match kind {
            Kind::Worker => info!(
                "worker {index} pid {pid} started (generation {})",
                self.current.number
            ),
            Kind::Cluster => info!("cluster helper pid {pid} started"),
        }
        self.workers.push(WorkerProc {
            pid,
            kind,
            index,
            stat_slot,
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
    fn become_worker(
        &mut self,
        index: usize,
        owner: Option<usize>,
        link: UnixStream,
        stat_slot: Option<usize>,
    ) -> i32 {
        crate::logging::set_worker_role(index);
        crate::proctitle::set(&format!(
            "wssd: worker process {index} (generation {})",
            self.current.number
        ));
        if !self.shed_master_state() {
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
        let stats = self.stats.zip(stat_slot).map(|(t, i)| &t.slots[i]);
        let spec = WorkerSpec {
            index,
            stats,
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

    /// In a freshly forked child: drops what belongs to the master (signal
    /// handlers, the siblings' relay sockets, the status listener) and
    /// asks to be stopped with the master. False if the master is gone.
    fn shed_master_state(&mut self) -> bool {
        if let Some(s) = self.signals.take() {
            s.uninstall();
        }
        // The siblings' relay sockets and older generations' listeners are
        // the master's business; holding them would keep them open. So is
        // a binary upgrade in progress.
        self.workers.clear();
        self.status = None;
        self.upgrade = None;
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGTERM)) {
            warn!("cannot ask to be stopped with the master: {e}");
        }
        nix::unistd::getppid() != Pid::from_raw(1)
    }

    /// Runs in the cluster helper right after fork; returns the exit status.
    fn become_cluster(&mut self, link: UnixStream) -> i32 {
        crate::logging::set_cluster_role();
        crate::proctitle::set("wssd: cluster process");
        if !self.shed_master_state() {
            return 0;
        }
        // Not the helper's business; closing it here keeps a retired
        // listener from living on in this process.
        drop(self.current.listener.take());
        if let Some(ids) = self.current.ids {
            if let Err(e) = privileges::apply(ids) {
                error!("cluster helper: refusing to run: cannot switch to user/group from the config: {e}");
                return EXIT_PRIVILEGES;
            }
        }
        let Some(config) = self.current.config.cluster.clone() else {
            return 0;
        };
        let counters = self.stats.map(|t| &t.cluster);
        crate::cluster::run(&config, &self.instance_id, link, counters)
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
        // Usually noticed already when its link closed.
        self.publish_peer_gone(w.token);
        if let (Some(table), Some(i)) = (self.stats, w.stat_slot) {
            table.release(i);
        }
        let reason = describe(status);
        let lived = w.started.elapsed();
        if w.kind == Kind::Cluster {
            self.on_cluster_exit(pid, &reason, lived, w.generation);
            return;
        }
        let current = w.generation == self.current.number;
        if self.state != State::Running || !current {
            info!("worker {} pid {pid} exited: {reason}", w.index);
            return;
        }
        let Some(slot) = self.slots.get_mut(w.index) else {
            return;
        };
        let delay = slot.schedule_restart(lived);
        warn!(
            "worker {} pid {pid} exited: {reason}; restarting it in {} ms",
            w.index,
            delay.as_millis()
        );
    }

    /// The cluster helper exited: restart it with back-off unless it was
    /// retired (reload with a new `[cluster]`) or the daemon stops.
    fn on_cluster_exit(&mut self, pid: Pid, reason: &str, lived: Duration, generation: u64) {
        // The figure is the current helper's: a retired one (reload with a
        // new `[cluster]`) may exit after its successor has connected.
        if let (Some(t), true) = (self.stats, generation == self.cluster_generation) {
            // Its successor reports again once connected.
            t.cluster
                .connected
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        let wanted = self.state == State::Running
            && generation == self.cluster_generation
            && self.current.config.cluster.is_some();
        if !wanted {
            info!("cluster helper pid {pid} exited: {reason}");
            return;
        }
        let delay = self.cluster_slot.schedule_restart(lived);
        warn!(
            "cluster helper pid {pid} exited: {reason}; restarting it in {} ms",
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
        if self.cluster_slot.restart_at.is_some_and(|t| t <= now) {
            self.cluster_slot.restart_at = None;
            self.spawn_cluster();
        }
    }

    /// Forks the cluster helper for the current `[cluster]`, if any.
    pub(super) fn spawn_cluster(&mut self) {
        if self.current.config.cluster.is_none() {
            return;
        }
        self.cluster_generation = self.current.number;
        if let Err(e) = self.spawn_kind(Kind::Cluster, 0) {
            error!("{e}; trying again");
            self.cluster_slot.restart_at = Some(Instant::now() + BACKOFF_MAX);
        }
    }

    /// Sends `sig` to the workers of `generation`, or to all.
    pub(super) fn signal_workers(&self, generation: Option<u64>, sig: Signal) {
        for w in &self.workers {
            // A generation's workers only: the cluster helper outlives
            // generations (see `Master::reload_cluster`).
            if generation.is_none_or(|g| w.generation == g && w.kind == Kind::Worker) {
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
            if let (Some(table), Some(i)) = (self.stats, w.stat_slot) {
                table.release(i);
            }
        }
    }
}

impl Slot {
    /// Counts a death after `lived` and sets the restart time; returns
    /// the delay.
    fn schedule_restart(&mut self, lived: Duration) -> Duration {
        if lived < QUICK_FAILURE {
            self.quick_failures += 1;
        } else {
            self.quick_failures = 0;
        }
        let delay = backoff(self.quick_failures);
        self.restart_at = Some(Instant::now() + delay);
        delay
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
