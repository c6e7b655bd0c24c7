//! Broadcasts in one worker: delivery to the local connections of a room,
//! publication to the other workers through the relay link, broadcasts
//! asked for in `on_close` (delivered between event batches), delayed
//! series (`broadcast_many`), and the receivers to flush at the end of
//! the loop turn (one write each for a burst of broadcasts). A broadcast's
//! frame is encoded once, into the turn's buffer (`turn.rs`), and its
//! receivers are given a span of it, not a copy.

use std::collections::VecDeque;
use std::time::Duration;

use log::{debug, warn};

use super::conn::Conn;
use super::rooms::Rooms;
use super::session::{
    data_opcode, give_back_deflate_out, take_deflate_out, with_shared, Compressed, Sent, Session,
};
use super::slab::Slab;
use super::turn::{self, Span};
use crate::frame::MessageKind;
use crate::handler::{ConnId, ConnInfo, Scope};
use crate::message::Message;
use crate::relay::{Delivered, Incoming, RelayLink, RelayMessage, RoomKey};

/// A broadcast waiting for its turn (`broadcast_many` with a delay).
struct Delayed {
    id: u64,
    key: RoomKey,
    skip: Option<ConnId>,
    messages: VecDeque<Message>,
    delay: Duration,
}

/// One broadcast: who receives it, who does not, what.
pub(super) struct Broadcast {
    /// The receivers.
    pub key: RoomKey,
    /// The sender, for "others".
    pub skip: Option<ConnId>,
    /// A text or binary message.
    pub message: Message,
}

/// Who a broadcast from the connection of `info` to `scope` is for: the
/// room key and, for "others" (`skip_self`), the sender to skip.
pub(super) fn target(info: &ConnInfo, scope: Scope, skip_self: bool) -> (RoomKey, Option<ConnId>) {
    (RoomKey::of(info, scope), skip_self.then_some(info.id))
}

/// What delivering one broadcast came to.
pub(super) struct Delivery {
    /// Receivers to drop (not reading, over their send buffer, failed).
    pub dropped: Vec<usize>,
    /// Receivers it was queued to.
    pub queued: u64,
    /// The compressions it took: one per window size for receivers
    /// without server context, one per receiver that keeps its own.
    pub compressed: Vec<Compressed>,
}

/// The worker's broadcast state.
#[derive(Default)]
pub(super) struct Broadcasts {
    /// The link to the master, which copies our broadcasts to the others.
    relay: Option<RelayLink>,
    delayed: Vec<Delayed>,
    next_delayed: u64,
    /// Broadcasts asked for in `on_close`, delivered between event batches.
    pending: VecDeque<Broadcast>,
    /// Receivers a broadcast queued output for this loop turn.
    flush_due: Vec<usize>,
    /// Who is in which room.
    rooms: Rooms,
}

impl Broadcasts {
    /// Broadcast state over the relay link to the master, if any.
    pub fn new(relay: Option<RelayLink>) -> Broadcasts {
        Broadcasts {
            relay,
            ..Broadcasts::default()
        }
    }

    /// The open connection in `slot` joins its rooms (before its
    /// handler's `on_open`, so that it receives what that broadcasts).
    pub fn join(&mut self, slot: usize, session: &mut Session) {
        session.places = self.rooms.join(slot, session.route, &session.info);
    }

    /// The connection of `session`, taken out of `conns`, leaves its
    /// rooms; the members that took its places learn their new ones.
    pub fn leave(&mut self, session: &Session, conns: &mut Slab<Conn>) {
        self.rooms
            .leave(session.route, &session.info, session.places, |m| {
                if let Some(s) = conns.get_mut(m.slot).and_then(Conn::session_mut) {
                    s.places.moved(m);
                }
            });
    }

    /// Sends a broadcast to the other workers through the master.
    pub fn publish(&mut self, b: &Broadcast) {
        if let Some(link) = self.relay.as_mut() {
            link.publish(&RelayMessage {
                key: b.key.clone(),
                skip: b.skip,
                message: b.message.clone(),
            });
        }
    }

    /// A readiness event on the relay link: sends what waits for the
    /// master and, if `readable`, takes what it relayed from the other
    /// workers into `incoming`. False if the link turned out closed: it
    /// is then dropped (the master is gone; PDEATHSIG ends us, but the
    /// loop must not spin on it meanwhile).
    pub fn on_relay(
        &mut self,
        registry: &mio::Registry,
        readable: bool,
        writable: bool,
        incoming: &mut Vec<Incoming>,
    ) -> bool {
        let Some(link) = self.relay.as_mut() else {
            return true;
        };
        if writable {
            link.flush();
        }
        if !readable || link.receive(incoming) {
            return true;
        }
        if let Some(mut link) = self.relay.take() {
            link.deregister(registry);
        }
        false
    }

    /// Tells the master how many connections a counted broadcast
    /// (`POST /publish`) was queued to here.
    pub fn report(&mut self, delivered: Delivered) {
        if let Some(link) = self.relay.as_mut() {
            link.report(delivered);
        }
    }

    /// Publishes now and delivers locally later (`take_pending`): for a
    /// connection being removed, which can happen inside a delivery.
    pub fn defer(&mut self, b: Broadcast) {
        self.publish(&b);
        self.pending.push_back(b);
    }

    /// The next broadcast deferred by `defer`.
    pub fn take_pending(&mut self) -> Option<Broadcast> {
        self.pending.pop_front()
    }

    /// Whether receivers wait for their end-of-turn flush.
    pub fn flush_pending(&self) -> bool {
        !self.flush_due.is_empty()
    }

    /// The receivers to flush this turn, each once.
    pub fn take_flush_due(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.flush_due)
    }

    /// The receivers taken with [`take_flush_due`](Self::take_flush_due)
    /// are flushed: the turn's frames can go, unless receivers were
    /// given frames since (they keep them until their own flush). The
    /// list's buffer is kept for the next turn.
    pub fn end_turn(&mut self, mut flushed: Vec<usize>) {
        if self.flush_due.is_empty() {
            turn::end_turn();
            flushed.clear();
            self.flush_due = flushed;
        }
    }

    /// Forgets the delayed series (the worker is shutting down).
    pub fn clear_delayed(&mut self) {
        self.delayed.clear();
    }

    /// Queues `b` to the local connections it is for; they are flushed at
    /// the end of the loop turn (`take_flush_due`). Returns the receivers
    /// to drop (with more than `max_send_buffer` queued, not reading, or
    /// failed), how many it was queued to and the compressions it took
    /// (for the counters).
    pub fn deliver(
        &mut self,
        conns: &mut Slab<Conn>,
        b: &Broadcast,
        max_send_buffer: usize,
    ) -> Delivery {
        let mut dropped = Vec::new();
        let mut queued = 0;
        let mut compressed = Vec::new();
        // Compressed once per window size for every receiver whose server
        // keeps no context (RFC 7692 output depends only on the message
        // and the window then), not once per receiver.
        let mut once = CompressedOnce::default();
        // The uncompressed frame, encoded once into the turn's buffer
        // with the first receiver that takes it.
        let mut plain: Option<Option<Span>> = None;
        for &slot in self.rooms.members(&b.key) {
            let slot = slot as usize;
            let Some(session) = conns.get_mut(slot).and_then(Conn::session_mut) else {
                continue;
            };
            if Some(session.info.id) == b.skip || session.closing_since.is_some() {
                continue;
            }
            let max = max_send_buffer;
            if session.backlog() > max {
                warn!(
                    "connection {} from {} is not reading: {} bytes queued (max_send_buffer {max}); disconnecting it",
                    session.info.id,
                    session.info.peer,
                    session.backlog()
                );
                dropped.push(slot);
                continue;
            }
            let sent = match once.body(session, &b.message) {
                Some(Body::Turn(span)) => session.send_turn(span, max),
                Some(Body::Own(kind, body)) => session.send_compressed(kind, body, max),
                None => match *plain.get_or_insert_with(|| plain_frame(&b.message)) {
                    Some(span) => session.send_turn(span, max),
                    // The turn's buffer is full: a copy of its own.
                    None => session.send(b.message.clone(), max),
                },
            };
            match sent {
                Sent::Drop => dropped.push(slot),
                Sent::Queued { compressed: own } => {
                    // A receiver with its own compressor compressed it itself.
                    compressed.extend(own);
                    queued += 1;
                    if !std::mem::replace(&mut session.flush_due, true) {
                        self.flush_due.push(slot);
                    }
                }
            }
        }
        if !once.made.is_empty() {
            debug!(
                "broadcast of {} bytes compressed {} time(s) for {} receiver(s)",
                b.message.len(),
                once.made.len(),
                once.used
            );
        }
        compressed.append(&mut once.made);
        Delivery {
            dropped,
            queued,
            compressed,
        }
    }

    /// Starts a delayed series: the first message now (returned, to be
    /// broadcast by the caller), the rest one per `delay`; returns the id
    /// of the timer to set, if any remain.
    pub fn schedule(
        &mut self,
        key: RoomKey,
        skip: Option<ConnId>,
        messages: Vec<Message>,
        delay: Duration,
    ) -> (Option<Broadcast>, Option<u64>) {
        let mut queue: VecDeque<Message> = messages.into();
        let Some(message) = queue.pop_front() else {
            return (None, None);
        };
        let first = Broadcast {
            key: key.clone(),
            skip,
            message,
        };
        if queue.is_empty() {
            return (Some(first), None);
        }
        self.next_delayed += 1;
        let id = self.next_delayed;
        self.delayed.push(Delayed {
            id,
            key,
            skip,
            messages: queue,
            delay,
        });
        (Some(first), Some(id))
    }

    /// The delayed series `id`'s timer fired: its next message, and the
    /// delay until the one after, if any.
    pub fn fire(&mut self, id: u64) -> Option<(Broadcast, Option<Duration>)> {
        let pos = self.delayed.iter().position(|d| d.id == id)?;
        let Some(message) = self.delayed[pos].messages.pop_front() else {
            self.delayed.swap_remove(pos);
            return None;
        };
        let d = &self.delayed[pos];
        let b = Broadcast {
            key: d.key.clone(),
            skip: d.skip,
            message,
        };
        let again = if d.messages.is_empty() {
            self.delayed.swap_remove(pos);
            None
        } else {
            Some(d.delay)
        };
        Some((b, again))
    }
}

/// `message`'s frame, appended to the turn's buffer; `None` if it is full.
fn plain_frame(message: &Message) -> Option<Span> {
    let (kind, payload) = kind_and_payload(message);
    turn::push_frame(data_opcode(kind), false, payload)
}

fn kind_and_payload(message: &Message) -> (MessageKind, &[u8]) {
    match message {
        Message::Text(t) => (MessageKind::Text, t.as_bytes()),
        Message::Binary(b) => (MessageKind::Binary, b),
    }
}

/// A compressed body for one window size.
enum Made {
    /// Its frame is in the turn's buffer.
    Turn(Span),
    /// The turn's buffer was full: the payload, to be queued to each
    /// receiver (a buffer from `take_deflate_out`, given back on drop).
    Own(Vec<u8>),
}

/// What a receiver gets of a compressed broadcast.
enum Body<'a> {
    /// Frames in the turn's buffer.
    Turn(Span),
    /// A compressed payload to queue.
    Own(MessageKind, &'a [u8]),
}

/// One broadcast's compressed bodies, by window size: compressed in the
/// worker's compressed-output buffer and framed once into the turn's
/// buffer, so a broadcast to compressing receivers allocates nothing.
#[derive(Default)]
struct CompressedOnce {
    /// The RFC 7692 payload for window bits `9 + i`, once made.
    bodies: [Option<Made>; 7],
    /// Compressions made (at most one per window size).
    made: Vec<Compressed>,
    /// Receivers served from them.
    used: usize,
}

impl CompressedOnce {
    /// The compressed body for `session`, when it negotiated compression
    /// without server context and the message reaches the threshold;
    /// `None`: send the message as it is.
    fn body(&mut self, session: &Session, message: &Message) -> Option<Body<'_>> {
        let deflate = session.deflate()?;
        let bits = deflate.shared_key(message.len())?;
        let (kind, payload) = kind_and_payload(message);
        let slot = &mut self.bodies[usize::from(bits.clamp(9, 15) - 9)];
        if slot.is_none() {
            let mut out = take_deflate_out();
            let made = with_shared(deflate.tuning(), |shared| {
                shared.compress(bits, payload, &mut out)
            });
            if let Err(e) = made {
                give_back_deflate_out(out);
                warn!("{e}; sending the broadcast uncompressed");
                return None;
            }
            self.made.push(Compressed {
                raw: payload.len(),
                out: out.len(),
            });
            *slot = Some(match turn::push_frame(data_opcode(kind), true, &out) {
                Some(span) => {
                    give_back_deflate_out(out);
                    Made::Turn(span)
                }
                None => Made::Own(out),
            });
        }
        self.used += 1;
        slot.as_ref().map(|made| match made {
            Made::Turn(span) => Body::Turn(*span),
            Made::Own(body) => Body::Own(kind, body),
        })
    }
}

impl Drop for CompressedOnce {
    fn drop(&mut self) {
        for made in self.bodies.iter_mut().filter_map(Option::take) {
            if let Made::Own(body) = made {
                give_back_deflate_out(body);
            }
        }
    }
}

#[cfg(test)]
mod tests;
