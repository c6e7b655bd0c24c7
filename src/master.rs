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

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Events, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::config::Config;
use crate::privileges::{self, Ids};
use crate::relay::Link;
use crate::sdnotify;
use crate::server::{App, Error, Server};
use crate::signals::{self, SignalPipe};
use crate::worker::{self, WorkerSpec};

const SIGNALS: Token = Token(0);
const FIRST_LINK: usize = 16;

/// A worker that lived shorter than this counts as a quick failure.
const QUICK_FAILURE: Duration = Duration::from_secs(2);
/// First back-off delay after quick failures; doubles up to the maximum.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Time beyond `drain_timeout` the master grants before SIGKILL: the
/// workers' own close grace plus a margin.
const KILL_SLACK: Duration = Duration::from_secs(7);

/// One everything-a-generation-needs bundle.
struct Generation {
    number: u64,
    config: Rc<Config>,
    app: Rc<App>,
    tls: Option<native_tls::TlsAcceptor>,
    ids: Option<Ids>,
    /// `None` only in a forked worker, which has taken it.
    listener: Option<Rc<std::net::TcpListener>>,
    addr: SocketAddr,
}

/// A live worker process.
struct WorkerProc {
    pid: Pid,
    index: usize,
    generation: u64,
    started: Instant,
    link: Option<Link>,
    token: Token,
    /// Kept so that the listener outlives the generation's workers.
    _listener: Option<Rc<std::net::TcpListener>>,
}

/// Restart bookkeeping for one worker slot of the current generation.
#[derive(Default)]
struct Slot {
    quick_failures: u32,
    restart_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Draining; SIGKILL whatever is left at `kill_at`.
    Stopping {
        kill_at: Instant,
    },
}

struct Master {
    server: Server,
    poll: Poll,
    signals: Option<SignalPipe>,
    current: Generation,
    workers: Vec<WorkerProc>,
    slots: Vec<Slot>,
    state: State,
    next_token: usize,
    /// SIGCHLD arrived since the last reap.
    child_exited: bool,
}

/// Runs the daemon described by `server` until it has drained.
pub(crate) fn run(server: Server) -> Result<(), Error> {
    let mut master = Master::start(server)?;
    let result = master.serve();
    if let Some(p) = &master.current.config.server.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn runtime(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{what}: {e}"))
}

/// Binds `addr` with SO_REUSEADDR and a deep backlog, non-blocking.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    use nix::sys::socket::{
        bind as nix_bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
        SockType, SockaddrStorage,
    };
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fail =
        |what: &str, e: nix::Error| Error::Runtime(crate::preflight::listen_failed(addr, what, e));
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| fail("socket", e))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail("SO_REUSEADDR", e))?;
    nix_bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .map_err(|e| fail("bind", e))?;
    let backlog = Backlog::new(4096).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog).map_err(|e| fail("listen", e))?;
    Ok(std::net::TcpListener::from(fd))
}

impl Master {
    fn start(server: Server) -> Result<Master, Error> {
        let config = Rc::new(server.config.clone());
        let app = Rc::new(server.build_app(&config)?);
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::load_acceptor(t, &config.source)?),
            None => None,
        };
        let ids = privileges::resolve(&config)?;
        let listener = bind(config.server.listen)?;
        let addr = listener.local_addr().map_err(runtime("local_addr"))?;
        let poll = Poll::new().map_err(runtime("creating the poller"))?;
        let signals = SignalPipe::new(&[
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGCHLD,
            signal_hook::consts::SIGQUIT,
        ])
        .map_err(runtime("installing signal handlers"))?;
        signals
            .register(poll.registry(), SIGNALS)
            .map_err(runtime("registering the signal pipe"))?;
        if let Some(p) = &config.server.pid_file {
            std::fs::write(p, format!("{}\n", std::process::id())).map_err(|e| {
                Error::Runtime(format!(
                    "key `server.pid_file`: cannot write {}: {e}",
                    p.display()
                ))
            })?;
        }
        info!(
            "master pid {} listening on {addr} ({} workers)",
            std::process::id(),
            config.server.workers
        );
        let workers = config.server.workers;
        let mut master = Master {
            server,
            poll,
            signals: Some(signals),
            current: Generation {
                number: 1,
                config,
                app,
                tls,
                ids,
                listener: Some(Rc::new(listener)),
                addr,
            },
            workers: Vec::new(),
            slots: (0..workers).map(|_| Slot::default()).collect(),
            state: State::Running,
            next_token: FIRST_LINK,
            child_exited: false,
        };
        for index in 0..workers {
            master.spawn(index)?;
        }
        sdnotify::notify(&format!(
            "READY=1\nSTATUS=listening on {addr}\nMAINPID={}",
            std::process::id()
        ));
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
                    return Err(Error::Runtime(format!("poll failed: {e}")));
                }
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.on_signals()?,
                    token => self.on_link(token, event.is_readable(), event.is_writable()),
                }
            }
            if std::mem::take(&mut self.child_exited) {
                self.reap();
            }
            self.restart_due()?;
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
        let restart = self.slots.iter().filter_map(|s| s.restart_at).min();
        let kill = match self.state {
            State::Stopping { kill_at } => Some(kill_at),
            State::Running => None,
        };
        [restart, kill].into_iter().flatten().min()
    }

    fn on_signals(&mut self) -> Result<(), Error> {
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
                _ => {}
            }
        }
        Ok(())
    }

    // ---- workers ----

    /// Forks worker `index` of the current generation.
    fn spawn(&mut self, index: usize) -> Result<(), Error> {
        let (master_end, worker_end) = UnixStream::pair().map_err(runtime("socketpair"))?;
        // Blocked across the fork: the child unblocks them once its own
        // handlers are installed, so a SIGTERM sent right now is not lost.
        let mask = signals::block(signals::WORKER_SIGNALS).map_err(runtime("sigprocmask"))?;
        // SAFETY: the master is single-threaded (it never starts a thread),
        // so no lock can be held by another thread across the fork.
        let forked = unsafe { fork() };
        if !matches!(forked, Ok(ForkResult::Child)) {
            signals::restore(&mask);
        }
        match forked {
            Err(e) => Err(Error::Runtime(format!("fork failed: {e}"))),
            Ok(ForkResult::Child) => {
                drop(master_end);
                let status = self.become_worker(index, worker_end);
                std::process::exit(status);
            }
            Ok(ForkResult::Parent { child }) => {
                drop(worker_end);
                let token = Token(self.next_token);
                self.next_token += 1;
                let link = match Link::new(master_end) {
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
                    "worker {index} pid {child} started (generation {})",
                    self.current.number
                );
                self.workers.push(WorkerProc {
                    pid: child,
                    index,
                    generation: self.current.number,
                    started: Instant::now(),
                    link,
                    token,
                    _listener: self.current.listener.clone(),
                });
                Ok(())
            }
        }
    }

    /// Runs in the child right after fork: sheds the master's state and
    /// runs the worker loop. Returns the exit status.
    fn become_worker(&mut self, index: usize, link: UnixStream) -> i32 {
        crate::server::set_worker_role(index);
        if let Some(s) = self.signals.take() {
            s.uninstall();
        }
        // The siblings' relay sockets and older generations' listeners are
        // the master's business; holding them would keep them open.
        self.workers.clear();
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGTERM)) {
            warn!("worker {index}: cannot ask to be stopped with the master: {e}");
        }
        if nix::unistd::getppid() == Pid::from_raw(1) {
            return 0; // the master died between fork and prctl
        }
        if let Some(ids) = self.current.ids {
            if let Err(e) = privileges::apply(ids) {
                error!("worker {index}: refusing to run: cannot switch to user/group from the config: {e}");
                return 4;
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
                    return 3;
                }
            },
            None => {
                error!("worker {index}: no listening socket");
                return 3;
            }
        };
        let spec = WorkerSpec {
            index,
            config: Rc::clone(&self.current.config),
            app: Rc::clone(&self.current.app),
            listener,
            relay: Some(link),
            tls: self.current.tls.clone(),
        };
        // A panic must end this process here, not unwind into the
        // master's code that the child inherited.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(spec))).unwrap_or_else(
            |_| {
                error!("worker {index} panicked outside a handler; exiting");
                70
            },
        )
    }

    /// Reaps every exited child and schedules replacements.
    fn reap(&mut self) {
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

    fn on_exit(&mut self, pid: Pid, status: &WaitStatus) {
        let Some(pos) = self.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        let w = self.workers.swap_remove(pos);
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

    fn restart_due(&mut self) -> Result<(), Error> {
        if self.state != State::Running {
            return Ok(());
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
        Ok(())
    }

    fn signal_workers(&self, generation: Option<u64>, sig: Signal) {
        for w in &self.workers {
            if generation.is_none_or(|g| w.generation == g) {
                let _ = kill(w.pid, sig);
            }
        }
    }

    // ---- reload and stop ----

    fn reload(&mut self) {
        if self.state != State::Running {
            return;
        }
        sdnotify::reloading();
        info!("SIGHUP: reloading the configuration");
        match self.next_generation() {
            Ok(next) => {
                let old = std::mem::replace(&mut self.current, next);
                let (old_number, old_drain) = (old.number, old.config.server.drain_timeout);
                // Dropped before forking: a child would otherwise keep the
                // old listening socket open for as long as it lives.
                drop(old);
                self.slots = (0..self.current.config.server.workers)
                    .map(|_| Slot::default())
                    .collect();
                log::set_max_level(level_filter(&self.current.config.log.level));
                for index in 0..self.slots.len() {
                    if let Err(e) = self.spawn(index) {
                        error!("{e}; trying again");
                        self.slots[index].restart_at = Some(Instant::now() + BACKOFF_START);
                    }
                }
                self.signal_workers(Some(old_number), Signal::SIGQUIT);
                info!(
                    "reloaded {}: generation {} listening on {}; generation {} drains for up to {:?}",
                    self.current.config.source.display(),
                    self.current.number,
                    self.current.addr,
                    old_number,
                    old_drain
                );
            }
            Err(e) => error!("reload failed, keeping the running configuration: {e}"),
        }
        sdnotify::notify("READY=1");
    }

    /// Loads and validates the next generation, binding a new address only
    /// if `listen` changed.
    fn next_generation(&self) -> Result<Generation, Error> {
        let config = self.server.reread()?;
        let app = self.server.build_app(&config)?;
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::load_acceptor(t, &config.source)?),
            None => None,
        };
        let ids = privileges::resolve(&config)?;
        // Unchanged text, or the address the current listener is bound to
        // (a config that said port 0 and now names the port chosen).
        let same = config.server.listen == self.current.config.server.listen
            || config.server.listen == self.current.addr;
        let (listener, addr) = if same {
            (self.current.listener.clone(), self.current.addr)
        } else {
            let l = bind(config.server.listen)?;
            let addr = l.local_addr().map_err(runtime("local_addr"))?;
            info!("master pid {} listening on {addr}", std::process::id());
            (Some(Rc::new(l)), addr)
        };
        if config.server.pid_file != self.current.config.server.pid_file {
            warn!("pid_file changes take effect at the next restart, not at a reload");
        }
        let mut config = config;
        config.server.pid_file = self.current.config.server.pid_file.clone();
        Ok(Generation {
            number: self.current.number + 1,
            config: Rc::new(config),
            app: Rc::new(app),
            tls,
            ids,
            listener,
            addr,
        })
    }

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
                self.state = State::Stopping {
                    kill_at: Instant::now() + drain + KILL_SLACK,
                };
                for slot in &mut self.slots {
                    slot.restart_at = None;
                }
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

    fn kill_all(&mut self) {
        self.signal_workers(None, Signal::SIGKILL);
        for w in std::mem::take(&mut self.workers) {
            let status = waitpid(w.pid, None);
            if let Ok(s) = status {
                info!("worker {} pid {} exited: {}", w.index, w.pid, describe(&s));
            }
        }
    }

    // ---- relay ----

    fn on_link(&mut self, token: Token, readable: bool, writable: bool) {
        let Some(pos) = self.workers.iter().position(|w| w.token == token) else {
            return;
        };
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut closed = false;
        if let Some(link) = self.workers[pos].link.as_mut() {
            if writable {
                link.flush();
            }
            if readable {
                closed = !link.read_frames(|f| frames.push(f.to_vec()));
            }
        }
        if closed {
            if let Some(link) = self.workers[pos].link.take() {
                link.deregister(self.poll.registry());
            }
        }
        if frames.is_empty() {
            return;
        }
        // Everything read in this event goes out in one write per link.
        for (i, w) in self.workers.iter_mut().enumerate() {
            if i != pos {
                if let Some(link) = w.link.as_mut() {
                    for frame in &frames {
                        link.push_frame(frame);
                    }
                    link.flush();
                }
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

fn level_filter(level: &str) -> log::LevelFilter {
    if std::env::var_os("RUST_LOG").is_some() {
        return log::max_level();
    }
    level
        .split(',')
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(log::LevelFilter::Info)
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
