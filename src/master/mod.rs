//! The master process: binds the listening socket, forks and supervises
//! the workers, relays broadcasts between them, and turns signals into
//! reloads and drains. It is single-threaded and starts no thread, so
//! forking is safe at any time.
//!
//! | signal          | what the master does                                          |
//! |-----------------|---------------------------------------------------------------|
//! | SIGHUP          | re-read the config; if valid, start a new generation and retire the old one |
//! | SIGTERM, SIGINT | drain: workers close clients with 1001; a second one kills at once |
//! | SIGCHLD         | reap; replace a worker of the current generation, with back-off |
//! | SIGUSR1         | reopen the log file, and have every worker reopen it |
//! | SIGUSR2         | binary upgrade: start the new binary on the same socket; once it is ready, retire and exit |
//!
//! `generation` loads and binds a generation (the first and every reload
//! the same way); `supervise` forks, reaps and restarts workers with
//! back-off; `reload` starts a new generation on SIGHUP and reopens the
//! logs on SIGUSR1; `upgrade` hands
//! over to a new binary; `serve_status` answers the status listener, with
//! `status` (the bytes), `report`, `publish` and `pending`; this module is
//! the loop, the signals, drain and the relay hub.

mod generation;
mod pending;
mod publish;
mod reload;
mod report;
mod serve_status;
mod status;
mod supervise;
mod upgrade;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Poll, Token};
use nix::sys::signal::Signal;

use crate::app::AppLoader;
use crate::error::Error;
use crate::inherit::{Inherited, Origin};
use crate::limits::Limiter;
use crate::relay::Delivered;
use crate::sdnotify;
use crate::signals::{self, SignalPipe};
use crate::stats::Table;
use generation::Generation;
use pending::Pending;
use status::StatusServer;
use supervise::{Kind, Slot, WorkerProc};
use upgrade::{Exec, Upgrade, UPGRADE};

const SIGNALS: Token = Token(0);
/// The status listener (`upgrade::UPGRADE` is `Token(1)`).
const STATUS_LISTENER: Token = Token(2);
const FIRST_LINK: usize = 16;
/// Status connections take tokens from here up (relay links stay below).
const FIRST_STATUS_CONN: usize = 1 << 40;

/// Time beyond `drain_timeout` the master grants before SIGKILL: the
/// workers' own close grace plus a margin.
const KILL_SLACK: Duration = Duration::from_secs(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Draining; SIGKILL whatever is left at `kill_at`.
    Stopping {
        kill_at: Instant,
    },
}

struct Master {
    loader: AppLoader,
    poll: Poll,
    signals: Option<SignalPipe>,
    current: Generation,
    workers: Vec<WorkerProc>,
    slots: Vec<Slot>,
    state: State,
    next_token: usize,
    /// SIGCHLD arrived since the last reap.
    child_exited: bool,
    /// The per-address limits every worker shares, mapped before the
    /// first fork (`None` when `[limits]` sets no limit).
    limiter: Option<Rc<Limiter>>,
    /// How this master was started, for a binary upgrade.
    exec: Exec,
    /// A new master started by SIGUSR2 that is not ready yet.
    upgrade: Option<Upgrade>,
    /// The master that started this one by a binary upgrade (its parent
    /// while it retires), if this one was started so.
    upgraded_from: Option<nix::unistd::Pid>,
    /// The pid file this master removes when it exits: `pid_file`, or
    /// `pid_file.oldbin` once a new master has taken over.
    pid_file: Option<PathBuf>,
    /// The shared counters, mapped before the first fork (`None` if the
    /// mapping failed: the daemon runs, without figures).
    stats: Option<&'static Table>,
    /// When the master started, for `/status`.
    started: Instant,
    /// The status listener and its connections, when `[status]` is set.
    status: Option<StatusServer>,
    /// `POST /publish` requests waiting for the workers' counts.
    publishes: Pending,
    /// Restart bookkeeping of the cluster helper.
    cluster_slot: Slot,
    /// The generation whose `[cluster]` the running helper serves.
    cluster_generation: u64,
    /// This instance's id in the cluster (`[cluster] instance_id`).
    instance_id: String,
}

/// Runs the daemon `loader` describes until it has drained, on the
/// sockets in `inherited` if systemd or an upgrading master passed any.
pub(crate) fn run(loader: AppLoader, inherited: Option<Inherited>) -> Result<(), Error> {
    // Captured before the title overwrites the memory they are read from.
    let exec = Exec {
        argv: std::env::args_os().collect(),
    };
    crate::proctitle::init();
    let mut master = Master::start(loader, inherited, exec)?;
    let result = master.serve();
    if let Some(p) = &master.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}

impl Master {
    fn start(
        loader: AppLoader,
        mut inherited: Option<Inherited>,
        exec: Exec,
    ) -> Result<Master, Error> {
        let current = Generation::new(&loader, None, inherited.as_mut())?;
        let poll = Poll::new().map_err(|e| Error::runtime("creating the poller", e))?;
        let signals = SignalPipe::new(&[
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGCHLD,
            signal_hook::consts::SIGQUIT,
            signal_hook::consts::SIGUSR1,
            signal_hook::consts::SIGUSR2,
        ])
        .map_err(|e| Error::runtime("installing signal handlers", e))?;
        signals
            .register(poll.registry(), SIGNALS)
            .map_err(|e| Error::runtime("registering the signal pipe", e))?;
        if let Some(p) = &current.config.server.pid_file {
            std::fs::write(p, format!("{}\n", std::process::id())).map_err(|e| {
                Error::Runtime(format!(
                    "key `server.pid_file`: cannot write {}: {e}",
                    p.display()
                ))
            })?;
        }
        let stats = match Table::create() {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(
                    "no shared counters (mmap failed: {e}); /status and /metrics show no figures"
                );
                None
            }
        };
        let status = match &current.config.status {
            Some(s) => {
                let passed = inherited.as_mut().and_then(|i| i.take_status(s.listen));
                Some(StatusServer::bind(
                    s,
                    passed,
                    poll.registry(),
                    STATUS_LISTENER,
                )?)
            }
            None => None,
        };
        let instance_id = current
            .config
            .cluster
            .as_ref()
            .map(|c| c.instance_id())
            .unwrap_or_default();
        let (addr, workers) = (current.addr, current.config.server.workers);
        let current_pid_file = current.config.server.pid_file.clone();
        crate::proctitle::set(&exec.master_title());
        crate::logging::give_to(current.ids);
        info!(
            "master pid {} listening on {addr} ({workers} workers)",
            std::process::id(),
        );
        let limiter = supervise::make_limiter(&current.config)?;
        let upgraded_from = inherited
            .as_ref()
            .filter(|i| i.origin() == Origin::Upgrade)
            .map(|_| nix::unistd::getppid());
        let mut master = Master {
            loader,
            poll,
            signals: Some(signals),
            current,
            workers: Vec::new(),
            slots: (0..workers).map(|_| Slot::default()).collect(),
            state: State::Running,
            next_token: FIRST_LINK,
            child_exited: false,
            limiter,
            exec,
            upgrade: None,
            upgraded_from,
            pid_file: current_pid_file,
            stats,
            started: Instant::now(),
            status,
            publishes: Pending::default(),
            cluster_slot: Slot::default(),
            cluster_generation: 0,
            instance_id,
        };
        for index in 0..workers {
            master.spawn(index)?;
        }
        master.spawn_cluster();
        match inherited.as_mut() {
            // The old master is systemd's main pid: it announces this one
            // (MAINPID=) once told, so NotifyAccess=main is enough.
            Some(i) if i.origin() == Origin::Upgrade => i.announce_ready(),
            _ => sdnotify::notify(&format!(
                "READY=1\nSTATUS=listening on {addr}\nMAINPID={}",
                std::process::id()
            )),
        }
        Ok(master)
    }

    /// The event loop: signals, relay traffic, restart and kill deadlines.
    fn serve(&mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self
                .next_deadline()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(Error::runtime("poll failed", e));
                }
            }
            for event in &events {
                match event.token() {
                    SIGNALS => self.on_signals(),
                    UPGRADE => self.on_upgrade_event(),
                    STATUS_LISTENER => self.on_status_accept(),
                    Token(t) if t >= FIRST_STATUS_CONN => self.on_status_conn(Token(t)),
                    token => self.on_link(token, event.is_readable(), event.is_writable()),
                }
            }
            self.status_timers();
            if std::mem::take(&mut self.child_exited) {
                self.reap();
            }
            self.restart_due();
            self.enforce_upgrade_deadline();
            self.enforce_kill_deadline();
            if let State::Stopping { .. } = self.state {
                if self.workers.is_empty() {
                    info!(
                        "master pid {} exiting: all workers are gone",
                        std::process::id()
                    );
                    return Ok(());
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let restart = self
            .slots
            .iter()
            .chain(std::iter::once(&self.cluster_slot))
            .filter_map(|s| s.restart_at)
            .min();
        let kill = match self.state {
            State::Stopping { kill_at } => Some(kill_at),
            State::Running => None,
        };
        let upgrade = self.upgrade.as_ref().map(|u| u.deadline);
        let status = self.status.as_ref().and_then(StatusServer::next_deadline);
        let publish = self.publishes.next_deadline();
        [restart, kill, upgrade, status, publish]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_signals(&mut self) {
        let taken = match self.signals.as_mut() {
            Some(s) => s.take(),
            None => Vec::new(),
        };
        for sig in taken {
            match sig {
                signal_hook::consts::SIGHUP => self.reload(),
                signal_hook::consts::SIGTERM
                | signal_hook::consts::SIGINT
                | signal_hook::consts::SIGQUIT => self.stop(sig),
                signal_hook::consts::SIGCHLD => self.child_exited = true,
                signal_hook::consts::SIGUSR1 => self.reopen_logs(),
                signal_hook::consts::SIGUSR2 => self.start_upgrade(),
                _ => {}
            }
        }
    }

    // ---- stop ----

    fn stop(&mut self, sig: i32) {
        match self.state {
            State::Running => {
                let drain = self.current.config.server.drain_timeout;
                info!(
                    "{}: draining {} workers (up to {drain:?}); send it again to stop at once",
                    signals::name(sig),
                    self.workers.len()
                );
                sdnotify::notify("STOPPING=1");
                self.abandon_upgrade();
                self.state = State::Stopping {
                    kill_at: Instant::now() + drain + KILL_SLACK,
                };
                for slot in &mut self.slots {
                    slot.restart_at = None;
                }
                self.cluster_slot.restart_at = None;
                self.signal_workers(None, Signal::SIGTERM);
            }
            State::Stopping { .. } => {
                warn!("{} again: stopping at once", signals::name(sig));
                self.kill_all();
            }
        }
    }

    fn enforce_kill_deadline(&mut self) {
        if let State::Stopping { kill_at } = self.state {
            if Instant::now() >= kill_at && !self.workers.is_empty() {
                warn!(
                    "drain deadline passed: killing {} workers",
                    self.workers.len()
                );
                self.kill_all();
            }
        }
    }

    // ---- relay ----

    fn on_link(&mut self, token: Token, readable: bool, writable: bool) {
        let Some(pos) = self.workers.iter().position(|w| w.token == token) else {
            return;
        };
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut counts: Vec<Delivered> = Vec::new();
        let mut closed = false;
        let worker = self.workers[pos].kind == Kind::Worker;
        if let Some(link) = self.workers[pos].link.as_mut() {
            if writable {
                link.flush();
            }
            if readable {
                closed = !link.read_frames(|f| match Delivered::decode(&f[4..]) {
                    Some(d) if worker => counts.push(d),
                    _ => frames.push(f.to_vec()),
                });
            }
        }
        for d in counts {
            let answer = self.publishes.delivered(token, d.request, d.receivers);
            self.send_answers(answer);
        }
        if closed {
            if let Some(link) = self.workers[pos].link.take() {
                link.deregister(self.poll.registry());
            }
            self.publish_peer_gone(token);
        }
        if frames.is_empty() || !self.is_relay_peer(&self.workers[pos]) {
            return;
        }
        self.fan_out(pos, &frames);
    }

    /// Whether `w`'s frames are relayed: every worker, and the current
    /// cluster helper (a retired one may still be subscribed while its
    /// successor is: its frames would be delivered twice).
    fn is_relay_peer(&self, w: &WorkerProc) -> bool {
        w.kind == Kind::Worker || w.generation == self.cluster_generation
    }

    /// Queues `frames` to every relay peer but `from` (the sender): the
    /// workers of every generation and the cluster helper, which
    /// publishes them to Redis (and whose own frames, from other
    /// instances, go to the workers only). Everything goes out in one
    /// write per link.
    fn fan_out(&mut self, from: usize, frames: &[Vec<u8>]) {
        let helper = self.cluster_generation;
        for (i, w) in self.workers.iter_mut().enumerate() {
            if i == from || (w.kind == Kind::Cluster && w.generation != helper) {
                continue;
            }
            if let Some(link) = w.link.as_mut() {
                for frame in frames {
                    link.push_frame(frame);
                }
                link.flush();
            }
        }
    }

    /// Queues a `POST /publish`: `counted` (a counted broadcast) to every
    /// worker of every generation, `plain` (the same broadcast uncounted)
    /// to the current cluster helper. Returns the relay links of the
    /// workers that took it, and whether the helper did.
    fn send_publish(&mut self, counted: &[u8], plain: &[u8]) -> (Vec<Token>, bool) {
        let helper = self.cluster_generation;
        let (mut workers, mut cluster) = (Vec::new(), false);
        for w in &mut self.workers {
            let Some(link) = w.link.as_mut() else {
                continue;
            };
            match w.kind {
                Kind::Worker if link.queue_frame(counted) => workers.push(w.token),
                Kind::Cluster if w.generation == helper => cluster = link.queue_frame(plain),
                _ => {}
            }
        }
        (workers, cluster)
    }
}
