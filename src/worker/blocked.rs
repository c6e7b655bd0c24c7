//! The worker's count of open connections whose output the socket did
//! not take (reading paused for backpressure, `Flush::Blocked`), for the
//! `send_blocked_connections` gauge. A session holds a [`Blocked`] marker
//! while it is in that state: making one counts it, dropping it (the
//! socket drained, or the session was removed or failed while blocked)
//! uncounts it, so the count changes only on transitions and cannot
//! outlive a session. The loop publishes the count once per turn when it
//! changed ([`take_changed`]); nothing here touches the shared table.

use std::cell::Cell;

thread_local! {
    /// Markers alive in this worker (one thread per worker process; unit
    /// tests' threads each count their own).
    static COUNT: Cell<usize> = const { Cell::new(0) };
    /// Whether `COUNT` moved since the loop last published it.
    static CHANGED: Cell<bool> = const { Cell::new(false) };
}

/// Held by a session while the socket will not take its output: counted
/// in the worker's gauge from [`Blocked::new`] until it is dropped.
#[derive(Debug)]
pub(super) struct Blocked(());

impl Blocked {
    /// A session's socket just filled: one more blocked connection.
    pub fn new() -> Blocked {
        COUNT.with(|c| c.set(c.get() + 1));
        CHANGED.with(|c| c.set(true));
        Blocked(())
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        COUNT.with(|c| c.set(c.get().saturating_sub(1)));
        CHANGED.with(|c| c.set(true));
    }
}

/// The number of blocked connections now, if it changed since the last
/// call (a transition or several); `None` otherwise.
pub(super) fn take_changed() -> Option<usize> {
    CHANGED
        .with(|c| c.replace(false))
        .then(|| COUNT.with(Cell::get))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_markers_alive_and_says_when_that_changed() {
        assert_eq!(take_changed(), None);
        let a = Blocked::new();
        let b = Blocked::new();
        assert_eq!(take_changed(), Some(2));
        assert_eq!(take_changed(), None);
        drop(a);
        assert_eq!(take_changed(), Some(1));
        drop(b);
        assert_eq!(take_changed(), Some(0));
    }
}
