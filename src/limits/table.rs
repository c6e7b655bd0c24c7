//! The per-IP table every worker shares: open connections per address key
//! and each key's handshake token bucket, in anonymous shared memory the
//! master maps before it forks (so every worker inherits the same pages).
//!
//! Layout: a header (a spin lock, its holder's pid, the slot count) and a
//! fixed array of slots, open addressing with linear probing. Each slot
//! holds a key, a token bucket, and one connection count per *owner* (a
//! worker's ledger column), so that when a worker dies the master can
//! forget exactly that worker's connections ([`IpTable::forget_owner`]);
//! the limit compares the sum of the columns.
//!
//! Every operation takes the table's lock for a few hundred nanoseconds
//! (one probe sequence). A lock keeps insertion exact (two workers
//! inserting the same new key must not make two slots) and slot reuse
//! simple; contention is bounded by the handshake rate. If the holder
//! dies inside the critical section (killed between two instructions), a
//! waiter notices that its pid is gone and takes the lock over.
//!
//! **Full table.** A key is only looked for and placed within
//! [`MAX_PROBE`] slots of its hash. A slot is reusable when it has no
//! connections and a full bucket (nothing to remember). When no slot is
//! free, [`IpTable::admit`] answers [`Refusal::TableFull`] and the caller
//! refuses the connection (503): failing closed keeps the limit a limit
//! under an address-spraying attack, and size the table (`table_size`)
//! well above the number of distinct addresses expected at once.

// The table lives in memory mapped before fork (mmap/munmap through nix):
// each unsafe site below carries its own SAFETY comment.
#![allow(unsafe_code)]

use std::fmt;
use std::mem::size_of;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::bucket::{Bucket, Rate};
use super::cidr::IpKey;

/// Slots examined from a key's home slot before the table counts as full.
pub const MAX_PROBE: usize = 64;

/// Spins before yielding the CPU while the lock is held elsewhere.
const SPINS_BEFORE_YIELD: u32 = 100;
/// Yields before checking whether the lock holder still exists.
const YIELDS_BEFORE_CHECK: u32 = 10_000;

/// Table header at the start of the mapping.
#[repr(C)]
struct Header {
    /// 0 = free; otherwise the holder's pid.
    lock: AtomicU32,
}

/// One slot (followed in memory by `owners` connection counts).
#[repr(C)]
struct Slot {
    /// 0 = never used; 1 = holds a key.
    used: AtomicU32,
    _pad: AtomicU32,
    key_hi: AtomicU64,
    key_lo: AtomicU64,
    bucket_milli: AtomicU64,
    bucket_at_ms: AtomicU64,
}

/// Why a connection may not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address has `max` connections open already.
    TooManyConnections {
        /// The configured maximum.
        max: u32,
    },
    /// The address used up its handshake burst; retry after this long.
    RateLimited {
        /// Until the next token.
        retry_after: Duration,
    },
    /// No free slot near the key's home: refuse (see the module comment).
    TableFull,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManyConnections { max } => {
                write!(f, "this address already has {max} connections open")
            }
            Refusal::RateLimited { retry_after } => write!(
                f,
                "too many handshakes from this address: retry in {} ms",
                retry_after.as_millis()
            ),
            Refusal::TableFull => {
                f.write_str("the per-address table is full: raise limits.table_size")
            }
        }
    }
}

/// What [`IpTable::admit`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Most open connections per key across all owners.
    pub max_connections: Option<u32>,
    /// Handshake rate per key and its burst.
    pub rate: Option<(Rate, u32)>,
}

impl Policy {
    /// Whether the policy limits nothing (connections are only counted).
    pub fn is_none(&self) -> bool {
        self.max_connections.is_none() && self.rate.is_none()
    }
}

/// The shared table. Create it in the master before forking; every
/// process then uses its inherited copy of this handle (the mapping is
/// shared, the handle is plain data).
pub struct IpTable {
    base: NonNull<u8>,
    bytes: usize,
    slots: usize,
    owners: usize,
    stride: usize,
    epoch: Instant,
}

impl fmt::Debug for IpTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpTable")
            .field("slots", &self.slots)
            .field("owners", &self.owners)
            .finish()
    }
}

impl IpTable {
    /// Maps a table of `slots` slots (rounded up to a power of two) with
    /// one connection column per owner (`owners` ≥ 1: the number of worker
    /// ids the master hands out, old generations draining included).
    ///
    /// Memory: `slots × (40 + 4 × owners)` bytes, shared, zero-filled and
    /// only backed by the kernel as pages are touched.
    pub fn new(slots: usize, owners: usize) -> nix::Result<IpTable> {
        let slots = slots.max(MAX_PROBE).next_power_of_two();
        let owners = owners.max(1);
        let stride = (size_of::<Slot>() + 4 * owners).next_multiple_of(8);
        let bytes = size_of::<Header>().next_multiple_of(8) + slots * stride;
        let len = NonZeroUsize::new(bytes).ok_or(nix::Error::EINVAL)?;
        // SAFETY: a fresh anonymous mapping: no file, no existing memory
        // is aliased; the kernel zero-fills it, which is the valid empty
        // state of every atomic in it.
        let base = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )?
        };
        Ok(IpTable {
            base: base.cast(),
            bytes,
            slots,
            owners,
            stride,
            epoch: Instant::now(),
        })
    }

    /// Owner ids (worker columns).
    pub fn owners(&self) -> usize {
        self.owners
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a `Header`, is page-aligned,
        // lives as long as `self`, and is only accessed through atomics.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    fn slot(&self, i: usize) -> &Slot {
        debug_assert!(i < self.slots);
        let offset = size_of::<Header>().next_multiple_of(8) + i * self.stride;
        // SAFETY: `i < slots`, so the slot lies inside the mapping;
        // offsets are multiples of 8 from a page-aligned base (aligned for
        // `Slot`); the memory is only accessed through atomics.
        unsafe { self.base.add(offset).cast::<Slot>().as_ref() }
    }

    fn count(&self, i: usize, owner: usize) -> &AtomicU32 {
        debug_assert!(owner < self.owners);
        let offset = size_of::<Header>().next_multiple_of(8)
            + i * self.stride
            + size_of::<Slot>()
            + 4 * owner;
        // SAFETY: inside slot `i`'s stride (owner < owners), 4-aligned,
        // only accessed atomically.
        unsafe { self.base.add(offset).cast::<AtomicU32>().as_ref() }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Checks `policy` for `key` and, if it passes, takes a handshake
    /// token and counts one connection for `owner`. Call
    /// [`release`](Self::release) with the same key and owner when that
    /// connection ends (also when the handshake fails later).
    pub fn admit(
        &self,
        owner: usize,
        key: IpKey,
        policy: &Policy,
        now: Instant,
    ) -> Result<(), Refusal> {
        let owner = owner % self.owners;
        let now_ms = self.now_ms(now);
        let _guard = self.lock();
        let i = self.find_or_place(key, policy, now_ms)?;
        if let Some(max) = policy.max_connections {
            if self.total(i) >= max {
                return Err(Refusal::TooManyConnections { max });
            }
        }
        if let Some((rate, burst)) = policy.rate {
            let slot = self.slot(i);
            let bucket = Bucket {
                milli: slot.bucket_milli.load(Ordering::Relaxed),
                at_ms: slot.bucket_at_ms.load(Ordering::Relaxed),
            };
            let taken = bucket
                .take(rate, burst, now_ms)
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
            slot.bucket_milli.store(taken.milli, Ordering::Relaxed);
            slot.bucket_at_ms.store(taken.at_ms, Ordering::Relaxed);
        }
        self.count(i, owner).fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets one connection of `owner` under `key`.
    pub fn release(&self, owner: usize, key: IpKey) {
        let owner = owner % self.owners;
        let _guard = self.lock();
        if let Some(i) = self.find(key) {
            let c = self.count(i, owner);
            let n = c.load(Ordering::Relaxed);
            c.store(n.saturating_sub(1), Ordering::Relaxed);
        }
    }

    /// Open connections of `key`, all owners together.
    #[cfg(test)]
    pub fn connections(&self, key: IpKey) -> u32 {
        let _guard = self.lock();
        self.find(key).map_or(0, |i| self.total(i))
    }

    /// Drops every count of `owner`: the master calls this when that
    /// worker has died (its connections died with it) before handing the
    /// owner id to a new worker.
    pub fn forget_owner(&self, owner: usize) {
        let owner = owner % self.owners;
        let _guard = self.lock();
        for i in 0..self.slots {
            self.count(i, owner).store(0, Ordering::Relaxed);
        }
    }

    fn total(&self, i: usize) -> u32 {
        (0..self.owners)
            .map(|o| self.count(i, o).load(Ordering::Relaxed))
            .fold(0u32, u32::saturating_add)
    }

    fn home(&self, key: IpKey) -> usize {
        // Fibonacci hashing of both halves: spreads /64 prefixes and
        // neighbouring IPv4 addresses alike.
        let h = (key.0 as u64 ^ (key.0 >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - self.slots.trailing_zeros())) as usize
    }

    fn holds(&self, i: usize, key: IpKey) -> bool {
        let s = self.slot(i);
        s.used.load(Ordering::Relaxed) == 1
            && s.key_hi.load(Ordering::Relaxed) == (key.0 >> 64) as u64
            && s.key_lo.load(Ordering::Relaxed) == key.0 as u64
    }

    /// The slot of `key` within its probe window (lock held).
    fn find(&self, key: IpKey) -> Option<usize> {
        let home = self.home(key);
        (0..MAX_PROBE)
            .map(|d| (home + d) & (self.slots - 1))
            .take_while(|&i| self.slot(i).used.load(Ordering::Relaxed) == 1)
            .find(|&i| self.holds(i, key))
    }

    /// The slot of `key`, claiming a free or reusable one in its probe
    /// window if it has none (lock held).
    fn find_or_place(&self, key: IpKey, policy: &Policy, now_ms: u64) -> Result<usize, Refusal> {
        let home = self.home(key);
        let mut reusable = None;
        for d in 0..MAX_PROBE {
            let i = (home + d) & (self.slots - 1);
            let slot = self.slot(i);
            if slot.used.load(Ordering::Relaxed) == 0 {
                return Ok(self.claim(reusable.unwrap_or(i), key, now_ms));
            }
            if self.holds(i, key) {
                return Ok(i);
            }
            if reusable.is_none() && self.is_idle(i, policy, now_ms) {
                reusable = Some(i);
            }
        }
        reusable
            .map(|i| self.claim(i, key, now_ms))
            .ok_or(Refusal::TableFull)
    }

    /// Whether slot `i` holds nothing worth keeping.
    fn is_idle(&self, i: usize, policy: &Policy, now_ms: u64) -> bool {
        if self.total(i) > 0 {
            return false;
        }
        let Some((rate, burst)) = policy.rate else {
            return true;
        };
        let s = self.slot(i);
        Bucket {
            milli: s.bucket_milli.load(Ordering::Relaxed),
            at_ms: s.bucket_at_ms.load(Ordering::Relaxed),
        }
        .is_full(rate, burst, now_ms)
    }

    fn claim(&self, i: usize, key: IpKey, now_ms: u64) -> usize {
        let s = self.slot(i);
        s.key_hi.store((key.0 >> 64) as u64, Ordering::Relaxed);
        s.key_lo.store(key.0 as u64, Ordering::Relaxed);
        // Full at any burst: the policy may change at a reload (a rate
        // set, a burst raised), and a new key must start with its whole
        // burst under the policy it meets.
        let full = Bucket::full_at_any_burst(now_ms);
        s.bucket_milli.store(full.milli, Ordering::Relaxed);
        s.bucket_at_ms.store(full.at_ms, Ordering::Relaxed);
        for o in 0..self.owners {
            self.count(i, o).store(0, Ordering::Relaxed);
        }
        s.used.store(1, Ordering::Relaxed);
        i
    }

    /// Takes the table lock (see the module comment on dead holders).
    fn lock(&self) -> Guard<'_> {
        let me = std::process::id();
        let lock = &self.header().lock;
        let mut spins = 0u32;
        loop {
            let holder = lock.load(Ordering::Relaxed);
            if holder == 0 {
                if lock
                    .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Guard { lock };
                }
                continue;
            }
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else if spins < SPINS_BEFORE_YIELD + YIELDS_BEFORE_CHECK {
                std::thread::yield_now();
            } else {
                spins = 0;
                if holder == me || !process_exists(holder) {
                    // The holder died inside the critical section (or a
                    // forked child inherited a held lock): take it over.
                    if lock
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        log::warn!(
                            "per-IP table: lock holder {holder} is gone; taking the lock over"
                        );
                        return Guard { lock };
                    }
                }
            }
        }
    }
}

/// Releases the table lock when dropped.
struct Guard<'a> {
    lock: &'a AtomicU32,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.lock.store(0, Ordering::Release);
    }
}

/// Whether a process with `pid` exists (signal 0 probes without sending).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

impl Drop for IpTable {
    fn drop(&mut self) {
        // SAFETY: `base`/`bytes` are exactly the mapping made in `new`,
        // and no reference into it outlives `self`. Each process unmaps its
        // own view; the memory goes when the last process does.
        unsafe {
            let _ = munmap(self.base.cast(), self.bytes);
        }
    }
}

// SAFETY: the handle only points at shared memory accessed through atomics.
unsafe impl Send for IpTable {}
// SAFETY: as above: all access is atomic, mutation happens under the lock.
unsafe impl Sync for IpTable {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(s: &str) -> IpKey {
        IpKey::new(s.parse::<IpAddr>().unwrap(), 64)
    }

    const CAP5: Policy = Policy {
        max_connections: Some(5),
        rate: None,
    };

    #[test]
    fn counts_per_key_and_releases() {
        let t = IpTable::new(1024, 2).unwrap();
        let now = Instant::now();
        for i in 0..5 {
            t.admit(i % 2, key("127.0.0.2"), &CAP5, now).unwrap();
        }
        assert_eq!(
            t.admit(0, key("127.0.0.2"), &CAP5, now),
            Err(Refusal::TooManyConnections { max: 5 })
        );
        t.admit(0, key("127.0.0.3"), &CAP5, now).unwrap();
        assert_eq!(t.connections(key("127.0.0.2")), 5);
        t.release(1, key("127.0.0.2"));
        t.admit(0, key("127.0.0.2"), &CAP5, now).unwrap();
        // A dead owner's connections are forgotten, others' kept.
        t.forget_owner(0);
        assert_eq!(t.connections(key("127.0.0.2")), 1);
        assert_eq!(t.connections(key("127.0.0.3")), 0);
    }

    #[test]
    fn rate_limits_with_burst_and_retry_after() {
        let t = IpTable::new(64, 1).unwrap();
        let policy = Policy {
            max_connections: None,
            rate: Some((Rate::parse("1/s").unwrap(), 3)),
        };
        let now = Instant::now();
        for _ in 0..3 {
            t.admit(0, key("10.0.0.1"), &policy, now).unwrap();
        }
        match t.admit(0, key("10.0.0.1"), &policy, now) {
            Err(Refusal::RateLimited { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
        t.admit(0, key("10.0.0.2"), &policy, now).unwrap();
        t.admit(0, key("10.0.0.1"), &policy, now + Duration::from_secs(1))
            .unwrap();
    }

    #[test]
    fn full_table_refuses_and_idle_slots_are_reused() {
        let t = IpTable::new(64, 1).unwrap();
        let now = Instant::now();
        let keys: Vec<IpKey> = (0..64).map(|i| key(&format!("192.0.2.{i}"))).collect();
        for k in &keys {
            t.admit(0, *k, &CAP5, now).unwrap();
        }
        assert_eq!(
            t.admit(0, key("198.51.100.1"), &CAP5, now),
            Err(Refusal::TableFull)
        );
        // Existing keys still work when the table is full.
        t.admit(0, keys[7], &CAP5, now).unwrap();
        // Once an address has no connection its slot can be taken over.
        t.release(0, keys[3]);
        t.admit(0, key("198.51.100.1"), &CAP5, now).unwrap();
        assert_eq!(t.connections(key("198.51.100.1")), 1);
        assert_eq!(t.connections(keys[7]), 2);
    }

    #[test]
    fn forked_processes_share_the_counts() {
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::{fork, ForkResult};
        let t = IpTable::new(1024, 4).unwrap();
        let policy = Policy {
            max_connections: Some(1000),
            rate: None,
        };
        let k = key("127.0.0.9");
        let mut children = Vec::new();
        for owner in 1..=2 {
            // SAFETY: the child only uses the table, atomics and
            // `_exit`; it never returns into the test harness.
            match unsafe { fork() }.unwrap() {
                ForkResult::Child => {
                    let mut ok = true;
                    for _ in 0..200 {
                        ok &= t.admit(owner, k, &policy, Instant::now()).is_ok();
                    }
                    // SAFETY: immediate exit without unwinding or atexit
                    // handlers in the forked copy of the test process.
                    unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) };
                }
                ForkResult::Parent { child } => children.push(child),
            }
        }
        for _ in 0..100 {
            t.admit(0, k, &policy, Instant::now()).unwrap();
        }
        for child in children {
            assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
        }
        assert_eq!(t.connections(k), 500);
        t.forget_owner(2);
        assert_eq!(t.connections(k), 300);
    }
}
