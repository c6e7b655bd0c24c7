//! One timer structure per worker: a min-heap of deadlines.
//!
//! Entries are never removed early. A connection remembers the deadline
//! it last scheduled; when an entry fires the worker asks the connection
//! what is due, and the connection schedules its next deadline if any.
//! Pushing only when a deadline moves earlier keeps the heap at about one
//! entry per connection, and an idle worker with no deadlines sleeps in
//! `poll` with no timeout at all.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A min-heap of `(deadline, key)`; `key` says whose deadline it is.
#[derive(Debug)]
pub struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Schedules `key` at `at`.
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// How long the event loop may sleep before the earliest deadline;
    /// `None` when nothing is scheduled.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }

    /// Removes and returns one entry that is due at `now`. A heap that
    /// emptied out (a burst of handshakes whose deadlines passed) gives
    /// its memory back.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let entry = match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        };
        if self.heap.capacity() > 1024 && self.heap.len() < self.heap.capacity() / 8 {
            self.heap.shrink_to(self.heap.len() * 2);
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.push(now + Duration::from_secs(2), 2u32);
        t.push(now + Duration::from_secs(1), 1u32);
        assert_eq!(t.timeout(now), Some(Duration::from_secs(1)));
        assert!(t.pop_due(now).is_none());
        let later = now + Duration::from_secs(3);
        assert_eq!(t.pop_due(later).map(|e| e.1), Some(1));
        assert_eq!(t.pop_due(later).map(|e| e.1), Some(2));
        assert!(t.timeout(later).is_none());
    }
}
