//! Shared counters: one table in a `MAP_SHARED | MAP_ANONYMOUS` mapping
//! that the master creates before it forks anything, so every worker (and
//! the cluster helper) inherits the same pages.
//!
//! Each worker writes only its own [`WorkerSlot`], with relaxed atomic
//! adds: a counter costs no system call and no lock, and a reader (the
//! master, answering `/status` or `/metrics`) sees every figure whole while
//! the workers are busy. The figures of one slot are not a consistent
//! snapshot of each other, which counters do not need (nginx's
//! `stub_status` works the same way).
//!
//! Slots belong to the master: it hands a free slot to each worker it
//! forks and gives a replaced worker's slot to its replacement, so a
//! slot's counters run on across restarts (Prometheus sees one series per
//! slot) and `restarts` counts how often that slot's worker was replaced.
//! The mapping is never unmapped: it lives as long as the process.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

/// Slots in the table: up to 1024 workers of the current generation plus
/// as many of a generation still draining after a reload.
pub const MAX_SLOTS: usize = 2048;

/// The handshake refusals counted by status; anything else counts as the
/// last entry ("other"). wssd's own checks answer 400, 403, 404, 405,
/// 426, 431 and 503 (an `exec` route at `max_processes`); the per-address
/// limits 429 (and 503 when their table is full); a handler's
/// `on_handshake` any status it likes, most often 401, 403 or 429, and
/// 500 when it panics.
pub const HANDSHAKE_STATUSES: [u16; 10] = [400, 401, 403, 404, 405, 426, 429, 431, 500, 503];

/// One worker's counters. Written only by that worker (and reset by the
/// master before the worker is forked).
#[repr(C)]
#[derive(Default)]
pub struct WorkerSlot {
    /// The worker's process id; 0 while the slot is free.
    pub pid: AtomicU64,
    /// The configuration generation the worker serves.
    pub generation: AtomicU64,
    /// The worker's index within its generation.
    pub index: AtomicU64,
    /// How many times this slot's worker was replaced after dying.
    pub restarts: AtomicU64,
    /// Open WebSocket connections (a gauge).
    pub connections: AtomicU64,
    /// TCP connections accepted.
    pub accepted: AtomicU64,
    /// WebSocket data messages received from clients.
    pub messages_in: AtomicU64,
    /// WebSocket data messages queued to clients (replies and broadcasts).
    pub messages_out: AtomicU64,
    /// Payload bytes of `messages_in`.
    pub bytes_in: AtomicU64,
    /// Payload bytes of `messages_out`.
    pub bytes_out: AtomicU64,
    /// Refused handshakes, by [`HANDSHAKE_STATUSES`] and then "other".
    pub handshake_failures: [AtomicU64; HANDSHAKE_STATUSES.len() + 1],
    /// permessage-deflate: times the worker compressed an outgoing
    /// message (a broadcast compressed once for all its receivers with
    /// the same window counts once).
    pub compressed_messages: AtomicU64,
    /// Payload bytes of those messages before compression.
    pub compressed_bytes_in: AtomicU64,
    /// The compressed payload bytes made from them.
    pub compressed_bytes_out: AtomicU64,
    /// Open connections whose output the socket did not take, so that
    /// reading them is paused (a gauge; see `worker::blocked`).
    pub send_blocked: AtomicU64,
}

impl WorkerSlot {
    /// Adds `n` to a counter. Relaxed: each counter stands alone.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one received data message of `bytes` payload bytes.
    #[inline]
    pub fn message_in(&self, bytes: usize) {
        Self::add(&self.messages_in, 1);
        Self::add(&self.bytes_in, bytes as u64);
    }

    /// Counts one data message of `bytes` queued to a client.
    #[inline]
    pub fn message_out(&self, bytes: usize) {
        Self::add(&self.messages_out, 1);
        Self::add(&self.bytes_out, bytes as u64);
    }

    /// Counts one outgoing message of `raw` payload bytes compressed to
    /// `out` bytes.
    #[inline]
    pub fn compressed(&self, raw: usize, out: usize) {
        Self::add(&self.compressed_messages, 1);
        Self::add(&self.compressed_bytes_in, raw as u64);
        Self::add(&self.compressed_bytes_out, out as u64);
    }

    /// Counts a refused handshake answered with `status`.
    pub fn handshake_failed(&self, status: u16) {
        let i = HANDSHAKE_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(HANDSHAKE_STATUSES.len());
        Self::add(&self.handshake_failures[i], 1);
    }

    /// A WebSocket opened.
    #[inline]
    pub fn opened(&self) {
        Self::add(&self.connections, 1);
    }

    /// A WebSocket closed.
    #[inline]
    pub fn closed(&self) {
        // Never below zero, even if a close were counted twice.
        let _ = self
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(gauge: &AtomicU64, n: u64) {
        gauge.store(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The cluster helper's counters (Redis pub/sub).
#[repr(C)]
#[derive(Default)]
pub struct ClusterCounters {
    /// 1 while the helper is connected to Redis, else 0.
    pub connected: AtomicU64,
    /// Broadcasts published to Redis.
    pub published: AtomicU64,
    /// Broadcasts received from other instances and handed to the workers.
    pub received: AtomicU64,
    /// Broadcasts dropped because what waited for Redis was over its cap.
    pub dropped: AtomicU64,
}

/// The whole shared table.
#[repr(C)]
pub struct Table {
    /// Cluster figures.
    pub cluster: ClusterCounters,
    /// One slot per worker.
    pub slots: [WorkerSlot; MAX_SLOTS],
}

impl Table {
    /// Maps a zeroed table shared with every process forked afterwards.
    /// The mapping is never unmapped, hence `'static`.
    pub fn create() -> std::io::Result<&'static Table> {
        let len = NonZeroUsize::new(std::mem::size_of::<Table>())
            .ok_or_else(|| std::io::Error::other("empty stats table"))?;
        #[allow(unsafe_code)]
        // SAFETY: a fresh anonymous mapping at an address the kernel
        // chooses cannot alias any Rust object; the arguments are valid.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(std::io::Error::from)?;
        #[allow(unsafe_code)]
        // SAFETY: the mapping is page-aligned (more than `Table`'s 8-byte
        // alignment), `size_of::<Table>()` bytes long, zero-filled by the
        // kernel (a valid `Table`: every field is an `AtomicU64`, for which
        // all-zero bits are 0), only ever accessed through atomics (so
        // sharing it between processes is sound), and never unmapped (so
        // `'static` holds).
        let table = unsafe { ptr.cast::<Table>().as_ref() };
        Ok(table)
    }

    /// Prepares slot `i` for a new worker: records who it is; counters
    /// run on (they are totals for the slot), the connection gauge starts
    /// again at zero; a replacement counts as a restart.
    pub fn claim(&self, i: usize, pid: u32, generation: u64, index: usize, restart: bool) {
        let s = &self.slots[i];
        s.connections.store(0, Ordering::Relaxed);
        s.send_blocked.store(0, Ordering::Relaxed);
        s.generation.store(generation, Ordering::Relaxed);
        s.index.store(index as u64, Ordering::Relaxed);
        if restart {
            WorkerSlot::add(&s.restarts, 1);
        }
        s.pid.store(u64::from(pid), Ordering::Relaxed);
    }

    /// Marks slot `i` free (its worker exited); counters stay for reading.
    pub fn release(&self, i: usize) {
        let s = &self.slots[i];
        s.pid.store(0, Ordering::Relaxed);
        s.connections.store(0, Ordering::Relaxed);
        s.send_blocked.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_writes_what_the_parent_reads() {
        let table = Table::create().unwrap();
        table.claim(3, 1, 1, 0, false);
        // A thread stands in for the forked worker here (unit tests run
        // threaded); the integration tests cover the real fork.
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..1000 {
                    table.slots[3].message_in(10);
                }
                table.slots[3].handshake_failed(404);
                table.slots[3].handshake_failed(429);
                table.slots[3].handshake_failed(599);
            });
        });
        let slot = &table.slots[3];
        assert_eq!(WorkerSlot::get(&slot.messages_in), 1000);
        assert_eq!(WorkerSlot::get(&slot.bytes_in), 10_000);
        assert_eq!(WorkerSlot::get(&slot.handshake_failures[3]), 1);
        assert_eq!(WorkerSlot::get(&slot.handshake_failures[6]), 1);
        assert_eq!(WorkerSlot::get(&slot.handshake_failures[10]), 1);
        slot.closed();
        assert_eq!(WorkerSlot::get(&slot.connections), 0);
        table.claim(3, 2, 1, 0, true);
        assert_eq!(WorkerSlot::get(&slot.restarts), 1);
        assert_eq!(WorkerSlot::get(&slot.messages_in), 1000);
    }
}
