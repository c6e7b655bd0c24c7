//! The worker's route handlers (one per route) and every call into them:
//! each callback sees the connection through a `handler::Conn`, a panic
//! is caught (the connection is then closed with 1011), an error goes to
//! `on_error`, and what the handler asked for waits in one reused list
//! of actions for the loop to carry out. Kept apart from the session,
//! which knows frames, and from the loop, which knows the other
//! connections the actions reach.

use std::panic::{catch_unwind, AssertUnwindSafe};

use log::error;

use super::broadcast::{target, Broadcast};
use super::session::{Received, Session};
use crate::handler::{Action, Conn as HandlerConn, Handler, HandlerError};
use crate::message::CloseCode;

/// One handler per route, and what the last callback asked for.
pub(super) struct Handlers {
    /// By route index.
    handlers: Vec<Box<dyn Handler>>,
    /// The last callback's actions, reused from call to call.
    actions: Vec<Action>,
}

impl Handlers {
    /// The routes' handlers, by route index.
    pub fn new(handlers: Vec<Box<dyn Handler>>) -> Handlers {
        Handlers {
            handlers,
            actions: Vec::new(),
        }
    }

    /// The handlers by route index (`on_handshake` runs during the
    /// upgrade, before there is a session).
    pub fn by_route(&mut self) -> &mut [Box<dyn Handler>] {
        &mut self.handlers
    }

    /// The actions the last callbacks asked for, to be carried out; give
    /// the list back with [`restore_actions`](Self::restore_actions) so
    /// that its buffer is reused.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Returns the (drained) list from [`take_actions`](Self::take_actions).
    pub fn restore_actions(&mut self, actions: Vec<Action>) {
        self.actions = actions;
    }

    /// Calls a handler callback for `session`'s connection, catching
    /// panics (the connection is then closed with 1011) and passing
    /// errors to `on_error`. What the handler asked for is left in the
    /// actions.
    pub fn call<F>(&mut self, session: &Session, f: F)
    where
        F: FnOnce(&mut dyn Handler, &mut HandlerConn<'_>) -> Result<(), HandlerError>,
    {
        let Some(handler) = self.handlers.get_mut(session.route) else {
            return;
        };
        let handler = handler.as_mut();
        let (info, actions) = (&session.info, &mut self.actions);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut conn = HandlerConn::new(info, actions);
            let result = f(handler, &mut conn);
            if let Err(e) = &result {
                handler.on_error(&mut conn, e);
            }
        }));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            error!(
                "route {}: handler panicked on connection {}: {what}; closing it with 1011",
                info.route(),
                info.id
            );
            actions.clear();
            actions.push(Action::Close(CloseCode::ERROR, "internal error".into()));
        }
    }

    /// Hands one received message to the handler; answers a ping first
    /// (in turn with the replies to the messages before it).
    pub fn dispatch(&mut self, session: &mut Session, received: Received) {
        match received {
            Received::Message(message) => {
                self.call(session, |h, c| h.on_message(c, message));
            }
            Received::Ping(payload) => {
                session.pong(&payload);
                self.call(session, |h, c| {
                    h.on_ping(c, &payload);
                    Ok(())
                })
            }
            Received::Pong(payload) => self.call(session, |h, c| {
                h.on_pong(c, &payload);
                Ok(())
            }),
        }
    }

    /// A protocol error ends the connection: tells the handler (what it
    /// asks for in return is dropped: the connection cannot send).
    pub fn fail(&mut self, session: &Session, error: &HandlerError) {
        self.call(session, |h, c| {
            h.on_error(c, error);
            Ok(())
        });
        self.actions.clear();
    }

    /// Tells the handler the connection is gone (with the peer's close
    /// code if it sent one). A closing connection cannot send: of what
    /// the handler asks for, only its broadcasts still go (returned; the
    /// rest is dropped with the iterator).
    pub fn close<'a>(
        &'a mut self,
        session: &'a mut Session,
    ) -> impl Iterator<Item = Broadcast> + 'a {
        let (code, reason) = session.take_peer_close();
        let info = &session.info;
        if let Some(handler) = self.handlers.get_mut(session.route) {
            let handler = handler.as_mut();
            let actions = &mut self.actions;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let mut conn = HandlerConn::new(info, actions);
                handler.on_close(&mut conn, code, &reason);
            }));
            if outcome.is_err() {
                error!(
                    "route {}: handler panicked in on_close of {}",
                    info.route(),
                    info.id
                );
            }
        }
        self.actions
            .drain(..)
            .filter_map(move |action| match action {
                Action::Broadcast { scope, message, .. } => {
                    let (key, skip) = target(info, scope, true);
                    Some(Broadcast { key, skip, message })
                }
                _ => None,
            })
    }
}
