//! Reload (SIGHUP): re-read the configuration and, if it is valid, start
//! a new generation of workers beside the old one and retire the old
//! one; what a generation shares with the next (the limiter, the cluster
//! helper, the status listener) is carried over or rebuilt here. Also
//! SIGUSR1's log reopening.

use std::rc::Rc;
use std::time::Instant;

use log::{error, info, warn};
use nix::sys::signal::Signal;

use super::generation::Generation;
use super::status::StatusServer;
use super::supervise::{self, Kind, Slot, BACKOFF_START};
use super::{Master, State, STATUS_LISTENER};
use crate::limits::Limiter;
use crate::sdnotify;

impl Master {
    /// SIGHUP: re-read the configuration; if it is valid, start its
    /// generation and retire the running one, else keep running as is.
    pub(super) fn reload(&mut self) {
        if self.state != State::Running {
            return;
        }
        if self.upgrade.is_some() {
            warn!("SIGHUP ignored: a new master (binary upgrade) is starting");
            return;
        }
        sdnotify::reloading();
        info!("SIGHUP: reloading the configuration");
        match Generation::new(&self.loader, Some(&self.current), None) {
            Ok(next) => {
                let old = std::mem::replace(&mut self.current, next);
                let (old_number, old_drain) = (old.number, old.config.server.drain_timeout);
                let old_cluster = old.config.cluster.clone();
                // Dropped before forking: a child would otherwise keep the
                // old listening socket open for as long as it lives.
                drop(old);
                self.slots = (0..self.current.config.server.workers)
                    .map(|_| Slot::default())
                    .collect();
                log::set_max_level(crate::logging::level_filter(&self.current.config.log.level));
                self.limiter = self.reload_limiter();
                for index in 0..self.slots.len() {
                    if let Err(e) = self.spawn(index) {
                        error!("{e}; trying again");
                        self.slots[index].restart_at = Some(Instant::now() + BACKOFF_START);
                    }
                }
                self.signal_workers(Some(old_number), Signal::SIGQUIT);
                self.reload_cluster(old_number, old_cluster);
                self.reload_status();
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

    /// After a reload: the per-address limits for the new generation.
    /// The shared table stays (connections of every generation are
    /// counted in it together); the new limits and exemptions apply to
    /// the new generation's handshakes. What cannot change without a
    /// new table is logged. A reload that sets limits where the start
    /// set none maps the table now: connections already open were never
    /// counted, which is logged too.
    fn reload_limiter(&self) -> Option<Rc<Limiter>> {
        let settings = &self.current.config.limits;
        let generation = self.current.number;
        let next = match &self.limiter {
            Some(limiter) => {
                let (next, kept) = limiter.reconfigure(settings);
                for why in kept {
                    warn!("reload: {why}");
                }
                Some(Rc::new(next))
            }
            None if settings.any() => match supervise::make_limiter(&self.current.config) {
                Ok(next) => {
                    warn!(
                        "reload: [limits] is set for the first time since the start: connections already open (older generations) are not counted against it"
                    );
                    next
                }
                Err(e) => {
                    error!("reload: {e}; generation {generation} runs without [limits]");
                    None
                }
            },
            None => None,
        };
        if next.is_some() {
            info!(
                "[limits] for generation {generation}: {}",
                settings.describe()
            );
        }
        next
    }

    /// SIGUSR1 (logrotate): reopen the log file here, then in every
    /// worker, old generations included.
    pub(super) fn reopen_logs(&mut self) {
        crate::logging::reopen();
        crate::logging::give_to(self.current.ids);
        self.signal_workers(None, Signal::SIGUSR1);
    }

    /// After a reload: keep the cluster helper if `[cluster]` is unchanged
    /// (it now serves the new generation), else retire it and start one
    /// for the new table (or none).
    fn reload_cluster(&mut self, old_number: u64, old: Option<crate::config::ClusterConfig>) {
        let new = self.current.config.cluster.clone();
        if old == new {
            if self.cluster_generation == old_number {
                self.cluster_generation = self.current.number;
                for w in &mut self.workers {
                    if w.kind == Kind::Cluster && w.generation == old_number {
                        w.generation = self.current.number;
                    }
                }
            }
            return;
        }
        info!("[cluster] changed: replacing the cluster helper");
        self.cluster_slot = Slot::default();
        for w in &self.workers {
            if w.kind == Kind::Cluster {
                let _ = nix::sys::signal::kill(w.pid, Signal::SIGTERM);
            }
        }
        if let Some(c) = &new {
            self.instance_id = c.instance_id();
        }
        // The retired helper's state is no longer the instance's; the
        // successor reports its own once connected.
        if let Some(t) = self.stats {
            t.cluster
                .connected
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        self.cluster_generation = 0;
        self.spawn_cluster();
    }

    /// After a reload: rebind the status listener if `[status] listen`
    /// changed, take the new token either way.
    fn reload_status(&mut self) {
        let wanted = self.current.config.status.clone();
        let same_listen = match (&self.status, &wanted) {
            (Some(s), Some(w)) => s.listen_config() == w.listen,
            (None, None) => true,
            _ => false,
        };
        if same_listen {
            if let (Some(s), Some(w)) = (self.status.as_mut(), &wanted) {
                s.set_token(w.token.clone());
            }
            return;
        }
        if let Some(mut old) = self.status.take() {
            old.close(self.poll.registry());
            // Their connections are closed; the new listener's tokens
            // start over.
            self.publishes.clear();
        }
        if let Some(w) = &wanted {
            match StatusServer::bind(w, None, self.poll.registry(), STATUS_LISTENER) {
                Ok(s) => self.status = Some(s),
                Err(e) => error!("{e}; the status listener stays off"),
            }
        }
    }
}
