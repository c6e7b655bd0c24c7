//! A worker's share of the daemon's per-address limits: the table the
//! master mapped before forking and this worker's column in it (its
//! owner id), and the count a connection holds, given back however the
//! connection ends (it is released when dropped).

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use crate::limits::{Limiter, Permit, Refusal};

/// The limiter and the owner id the master gave this worker.
#[derive(Clone)]
pub(crate) struct Limits {
    limiter: Rc<Limiter>,
    owner: usize,
}

impl Limits {
    /// This worker's view of `limiter` as `owner`.
    pub fn new(limiter: Rc<Limiter>, owner: usize) -> Limits {
        Limits { limiter, owner }
    }

    /// Counts a connection from `client`, or says why it is refused.
    /// Exempt addresses are admitted without being counted.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Result<Counted, Refusal> {
        let permit = self.limiter.admit(self.owner, client, now)?;
        Ok(Counted {
            limits: self.clone(),
            permit,
        })
    }
}

/// A connection's count in the shared table; released on drop, so that a
/// connection removed in any state (refused by the hook, a failed write,
/// closed, timed out) gives its place back.
pub(crate) struct Counted {
    limits: Limits,
    permit: Option<Permit>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.limits.limiter.release(self.limits.owner, permit);
        }
    }
}
