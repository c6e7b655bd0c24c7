//! Publishes waiting for the workers' delivery counts.
//!
//! `POST /publish` answers with the number of local connections the
//! message reached, which only the workers know. The master sends each
//! worker a counted broadcast (`relay::RelayMessage::encode_counted`)
//! and keeps the request here, with the workers it is waiting for, while
//! the status connection waits without blocking the loop. Each worker's
//! `relay::Delivered` adds its count; the answer is ready when every
//! worker asked has answered, or has died (its link closed or it was
//! reaped), or the deadline has passed, whichever comes first: a wedged
//! or dying worker costs the HTTP client at most [`WAIT`], never a hang.
//!
//! Pure bookkeeping: no sockets, and the caller passes the time.

use std::time::{Duration, Instant};

use mio::Token;

/// How long a publish waits for the workers' counts before it is answered
/// with what is known (`"complete": false`). A worker answers within one
/// turn of its loop; this covers a busy machine, and stays well below the
/// status connection's own deadline.
pub(super) const WAIT: Duration = Duration::from_secs(2);

/// One publish whose answer waits for workers.
struct Waiting {
    request: u64,
    /// The status connection to answer.
    conn: Token,
    deadline: Instant,
    /// The relay links of the workers that have not answered yet.
    outstanding: Vec<Token>,
    /// Workers the message went to.
    asked: usize,
    /// Workers that have answered, and their connections.
    answered: usize,
    receivers: u64,
    cluster: bool,
}

/// The answer to one publish, ready to be sent.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Answer {
    /// The status connection that asked.
    pub conn: Token,
    /// Local connections the message was queued to, in the workers that
    /// answered.
    pub receivers: u64,
    /// Workers that answered.
    pub workers: usize,
    /// Whether every worker the message went to answered.
    pub complete: bool,
    /// Whether the message also went to the cluster helper (and so to
    /// the other instances through Redis).
    pub cluster: bool,
}

impl Answer {
    /// The JSON body of the 202 answer.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "receivers": self.receivers,
            "workers": self.workers,
            "complete": self.complete,
            "cluster": self.cluster,
        })
    }
}

impl Waiting {
    fn answer(self) -> Answer {
        Answer {
            conn: self.conn,
            receivers: self.receivers,
            workers: self.answered,
            complete: self.answered == self.asked,
            cluster: self.cluster,
        }
    }
}

/// The publishes waiting for workers, in the order they were made.
#[derive(Default)]
pub(super) struct Pending {
    next_request: u64,
    waiting: Vec<Waiting>,
}

impl Pending {
    /// A fresh request id for the next publish's counted broadcast.
    pub fn next_request(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Starts waiting for `workers` (their relay links) to count
    /// `request`, to answer `conn` by `deadline`. Returns the answer at
    /// once if there is no worker to wait for.
    pub fn wait(
        &mut self,
        request: u64,
        conn: Token,
        workers: Vec<Token>,
        cluster: bool,
        deadline: Instant,
    ) -> Option<Answer> {
        let w = Waiting {
            request,
            conn,
            deadline,
            asked: workers.len(),
            outstanding: workers,
            answered: 0,
            receivers: 0,
            cluster,
        };
        if w.outstanding.is_empty() {
            return Some(w.answer());
        }
        self.waiting.push(w);
        None
    }

    /// The worker on link `from` delivered `request` to `receivers`
    /// connections; the answer, if that was the last count awaited. A
    /// count that comes too late (or twice) is ignored.
    pub fn delivered(&mut self, from: Token, request: u64, receivers: u64) -> Option<Answer> {
        let pos = self.waiting.iter().position(|w| w.request == request)?;
        let w = &mut self.waiting[pos];
        let i = w.outstanding.iter().position(|t| *t == from)?;
        w.outstanding.swap_remove(i);
        w.answered += 1;
        w.receivers += receivers;
        w.outstanding
            .is_empty()
            .then(|| self.waiting.remove(pos).answer())
    }

    /// The worker on link `from` is gone: it will not answer. Returns the
    /// publishes that were waiting only for it.
    pub fn gone(&mut self, from: Token) -> Vec<Answer> {
        for w in &mut self.waiting {
            w.outstanding.retain(|t| *t != from);
        }
        self.take(|w| w.outstanding.is_empty())
    }

    /// The publishes whose deadline has passed by `now`, answered with
    /// what is known.
    pub fn expire(&mut self, now: Instant) -> Vec<Answer> {
        self.take(|w| w.deadline <= now)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|w| w.deadline).min()
    }

    /// Forgets every waiting publish (their status connections are gone:
    /// the status listener was replaced).
    pub fn clear(&mut self) {
        self.waiting.clear();
    }

    fn take(&mut self, done: impl Fn(&Waiting) -> bool) -> Vec<Answer> {
        let (ready, keep): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(done);
        self.waiting = keep;
        ready.into_iter().map(Waiting::answer).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONN: Token = Token(100);
    const W1: Token = Token(16);
    const W2: Token = Token(17);

    fn started(p: &mut Pending, now: Instant) -> u64 {
        let r = p.next_request();
        assert_eq!(p.wait(r, CONN, vec![W1, W2], true, now + WAIT), None);
        r
    }

    #[test]
    fn the_answer_waits_for_every_worker_and_sums_their_counts() {
        let (mut p, now) = (Pending::default(), Instant::now());
        let r = started(&mut p, now);
        assert_eq!(p.delivered(W2, r, 1), None);
        assert_eq!(p.delivered(W2, r, 1), None, "a second count is ignored");
        assert_eq!(p.delivered(W1, r + 1, 5), None, "another request's count");
        let a = p.delivered(W1, r, 2).expect("both answered");
        assert_eq!(
            (a.conn, a.receivers, a.workers, a.complete, a.cluster),
            (CONN, 3, 2, true, true)
        );
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.delivered(W1, r, 2), None, "a late count is ignored");
    }

    #[test]
    fn a_dead_worker_or_the_deadline_ends_the_wait_incomplete() {
        let (mut p, now) = (Pending::default(), Instant::now());
        let r = started(&mut p, now);
        assert_eq!(p.delivered(W1, r, 4), None);
        let a = p.gone(W2);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].receivers, a[0].workers, a[0].complete), (4, 1, false));

        let r = started(&mut p, now);
        assert_eq!(p.delivered(W2, r, 1), None);
        assert!(p.expire(now + WAIT - Duration::from_millis(1)).is_empty());
        assert_eq!(p.next_deadline(), Some(now + WAIT));
        let a = p.expire(now + WAIT);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].receivers, a[0].workers, a[0].complete), (1, 1, false));
        assert!(p.gone(W1).is_empty(), "nothing left to answer");
    }

    #[test]
    fn without_workers_the_answer_is_immediate() {
        let mut p = Pending::default();
        let r = p.next_request();
        let a = p.wait(r, CONN, Vec::new(), false, Instant::now()).unwrap();
        assert_eq!(a.json()["receivers"], 0);
        assert_eq!(a.json()["complete"], true);
        assert_eq!(a.json()["cluster"], false);
    }
}
