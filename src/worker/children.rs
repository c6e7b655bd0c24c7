//! The programs of `exec` connections in this worker: which connection
//! owns each pid, how many each route runs (for `max_processes`), and
//! which ones outlived their connection and are being ended (stdin
//! closed, then SIGTERM, then SIGKILL, each after `kill_grace`).
//!
//! Entries leave only when SIGCHLD reaps the pid, so a pid in the table
//! is never a recycled one.

use std::collections::HashMap;

use nix::unistd::Pid;

use crate::exec::{self, Process};

/// The program of an open `exec` connection, with the loop's flags.
pub(super) struct Program {
    /// The process and its pipes.
    pub process: Process,
    /// Reading the client is paused: stdin has too much input waiting.
    pub input_paused: bool,
    /// stdout may have data not read yet (its readiness edge is spent):
    /// read it when the connection is next driven.
    pub output_waiting: bool,
    /// The route's index.
    pub route: usize,
}

impl Program {
    /// After a batch of the client's messages: pauses reading the client
    /// if stdin has too much waiting; true if reading is paused.
    pub fn input_full(&mut self) -> bool {
        if self.process.pending_input() > exec::MAX_PENDING_INPUT {
            self.input_paused = true;
        }
        self.input_paused
    }
}

/// Who a running program belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// The open connection in `slot` (with `serial`).
    Conn { slot: usize, serial: u32 },
    /// Nobody: its connection is gone and it is being ended.
    Orphan,
}

/// The worker's running programs.
#[derive(Debug, Default)]
pub(super) struct Children {
    owners: HashMap<Pid, (usize, Owner)>,
    running: Vec<usize>,
}

impl Children {
    /// A table for a worker with `routes` routes.
    pub fn new(routes: usize) -> Children {
        Children {
            owners: HashMap::new(),
            running: vec![0; routes],
        }
    }

    /// Programs running per route index (orphans included).
    pub fn running(&self) -> &[usize] {
        &self.running
    }

    /// Whether no program is running.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Records a started program of `route` serving `slot`.
    pub fn add(&mut self, pid: Pid, route: usize, slot: usize, serial: u32) {
        self.owners
            .insert(pid, (route, Owner::Conn { slot, serial }));
        if let Some(n) = self.running.get_mut(route) {
            *n += 1;
        }
    }

    /// Its connection is gone.
    pub fn orphan(&mut self, pid: Pid) {
        if let Some((_, owner)) = self.owners.get_mut(&pid) {
            *owner = Owner::Orphan;
        }
    }

    /// Whether `pid` is a program whose connection is gone.
    pub fn is_orphan(&self, pid: Pid) -> bool {
        matches!(self.owners.get(&pid), Some((_, Owner::Orphan)))
    }

    /// The route index of `pid`.
    pub fn route_of(&self, pid: Pid) -> Option<usize> {
        self.owners.get(&pid).map(|(r, _)| *r)
    }

    /// `pid` was reaped: forgets it and says whose it was.
    pub fn reaped(&mut self, pid: Pid) -> Option<Owner> {
        let (route, owner) = self.owners.remove(&pid)?;
        if let Some(n) = self.running.get_mut(route) {
            *n = n.saturating_sub(1);
        }
        Some(owner)
    }
}
