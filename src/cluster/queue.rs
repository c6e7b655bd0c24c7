//! What waits for Redis: channel messages in order, bounded in bytes; over
//! the cap the oldest are dropped and counted. Owned by the helper's loop
//! alone, so it needs no lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use log::warn;

/// Messages waiting to be published, oldest first.
pub(super) struct Queue {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    cap: usize,
}

impl Queue {
    /// An empty queue holding at most `cap` bytes.
    pub fn new(cap: usize) -> Queue {
        Queue {
            messages: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    /// Queues a message, dropping the oldest over the cap (counted in
    /// `dropped`).
    pub fn push(&mut self, message: Vec<u8>, dropped: &AtomicU64) {
        self.bytes += message.len();
        self.messages.push_back(message);
        while self.bytes > self.cap {
            let Some(old) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(
                    "cluster: over max_pending ({} bytes) waiting for Redis: {n} broadcasts dropped so far",
                    self.cap
                );
            }
        }
    }

    /// Moves into `batch` the oldest messages, in order: at least one
    /// (if any), then more while they fit in `max_bytes`.
    pub fn pop_batch(&mut self, batch: &mut Vec<Vec<u8>>, max_bytes: usize) {
        let mut bytes = 0;
        while let Some(m) = self.messages.front() {
            if !batch.is_empty() && bytes + m.len() > max_bytes {
                break;
            }
            bytes += m.len();
            let Some(m) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= m.len();
            batch.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publisher_takes_what_queued_up_in_order_within_the_batch_size() {
        let dropped = AtomicU64::new(0);
        let mut q = Queue::new(1 << 20);
        for i in 0..10u8 {
            q.push(vec![i; 100], &dropped);
        }
        let mut batch = Vec::new();
        q.pop_batch(&mut batch, 450);
        assert_eq!(batch, (0..4u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
        batch.clear();
        q.pop_batch(&mut batch, 1 << 20);
        assert_eq!(batch, (4..10u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
        // A message over the batch size still goes, alone.
        q.push(vec![1; 1000], &dropped);
        q.push(vec![2; 10], &dropped);
        batch.clear();
        q.pop_batch(&mut batch, 100);
        assert_eq!(batch, [vec![1; 1000]]);
        assert_eq!((q.messages.len(), q.bytes), (1, 10));
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_queue_drops_the_oldest_over_max_pending() {
        let dropped = AtomicU64::new(0);
        let mut q = Queue::new(250);
        for i in 0..4u8 {
            q.push(vec![i; 100], &dropped);
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        let mut batch = Vec::new();
        q.pop_batch(&mut batch, 1 << 20);
        assert_eq!(batch, [vec![2; 100], vec![3; 100]]);
        assert!(q.messages.is_empty());
    }
}
