//! An optional reconnecting wrapper around [`Client`]: exponential
//! back-off with jitter between attempts, a keep-alive ping with a pong
//! deadline to notice a server that stopped answering, and an event (and
//! a callback) when a new connection replaces a lost one.
//!
//! ```no_run
//! use std::time::Duration;
//! use wssd::client::ClientConfig;
//! use wssd::client::reconnect::{Event, ReconnectOptions, ReconnectingClient};
//!
//! let mut client = ReconnectingClient::connect(
//!     "ws://127.0.0.1:8080/chat/lobby",
//!     ClientConfig::default(),
//!     ReconnectOptions::default(),
//! )?
//! .on_reconnect(|c| c.send_text("hello again"));
//! loop {
//!     match client.next_event(Duration::from_secs(1))? {
//!         Some(Event::Message(m)) => println!("{}", m.to_text_lossy()),
//!         Some(Event::Disconnected(why)) => eprintln!("lost: {why}"),
//!         Some(Event::Reconnected { attempts }) => eprintln!("back after {attempts}"),
//!         None => {}
//!     }
//! }
//! # Ok::<(), wssd::client::ClientError>(())
//! ```
//!
//! What is reconnected: a connection that ended without a close frame
//! (1006: reset, network loss, missed pong) or that the server closed with
//! 1001 (going away: a restart or drain), 1011, 1012, 1013 or 1014. A
//! close with any other code (1000 normal, 1008 policy, ...) is the
//! server's decision and ends the client with [`ClientError::Closed`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Client, ClientConfig, ClientError, Message};

/// Delays between reconnection attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the first attempt after a loss.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Factor from one delay to the next (≥ 1).
    pub multiplier: f64,
    /// Give up after this many failed attempts in a row; `None` = never.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1 = the first) without jitter:
    /// `initial × multiplier^(attempt-1)`, at most `max`.
    pub fn base(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }

    /// The delay before attempt `attempt`, with "equal jitter": half the
    /// base plus a random part of the other half, so that many clients
    /// that lost the same server do not come back in the same instant.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base(attempt);
        base / 2 + base.mul_f64(rand::random::<f64>() / 2.0)
    }
}

/// Keep-alive pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Send a ping this often.
    pub interval: Duration,
    /// A connection whose pong has not come within this long is taken as
    /// lost (and reconnected).
    pub pong_timeout: Duration,
}

/// Settings of a [`ReconnectingClient`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReconnectOptions {
    /// Delays between attempts.
    pub backoff: Backoff,
    /// Keep-alive pings; `None` = none (a silent dead peer is then only
    /// noticed when a send fails).
    pub keep_alive: Option<KeepAlive>,
}

/// What happened on a reconnecting client.
#[derive(Debug)]
pub enum Event {
    /// A data message arrived.
    Message(Message),
    /// The connection was lost; reconnecting starts with the next call.
    Disconnected(ClientError),
    /// A new connection is open after `attempts` attempts.
    Reconnected {
        /// Attempts it took (1 = the first succeeded).
        attempts: u32,
    },
}

/// Called on every new connection after a loss, before anything else is
/// sent on it (e.g. to authenticate or re-subscribe).
type OnReconnect = Box<dyn FnMut(&mut Client) -> Result<(), ClientError>>;

/// A [`Client`] that reconnects; see the module documentation.
pub struct ReconnectingClient {
    url: String,
    config: ClientConfig,
    options: ReconnectOptions,
    client: Option<Client>,
    /// When the unanswered keep-alive ping was sent.
    ping_sent: Option<Instant>,
    /// When the next keep-alive ping is due.
    next_ping: Option<Instant>,
    on_reconnect: Option<OnReconnect>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("url", &self.url)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl ReconnectingClient {
    /// Connects once; a failure here is returned (a wrong URL or a server
    /// that is not there should be reported, not retried forever).
    /// Reconnection applies to connections lost later.
    pub fn connect(
        url: &str,
        config: ClientConfig,
        options: ReconnectOptions,
    ) -> Result<ReconnectingClient, ClientError> {
        let client = Client::connect(url, &config)?;
        let mut this = ReconnectingClient {
            url: url.to_string(),
            config,
            options,
            client: Some(client),
            ping_sent: None,
            next_ping: None,
            on_reconnect: None,
            events: VecDeque::new(),
        };
        this.reset_keep_alive();
        Ok(this)
    }

    /// Sets the callback run on every new connection after a loss.
    #[must_use]
    pub fn on_reconnect(
        mut self,
        callback: impl FnMut(&mut Client) -> Result<(), ClientError> + 'static,
    ) -> Self {
        self.on_reconnect = Some(Box::new(callback));
        self
    }

    /// The current connection, if one is open.
    pub fn client(&mut self) -> Option<&mut Client> {
        self.client.as_mut()
    }

    /// The subprotocol of the current connection.
    pub fn subprotocol(&self) -> Option<&str> {
        self.client.as_ref().and_then(Client::subprotocol)
    }

    /// Sends `message`, reconnecting first if the connection is known to be
    /// lost. If the connection breaks while sending, the message is not
    /// re-sent (it may have arrived): [`ClientError::SendLost`].
    pub fn send(&mut self, message: Message) -> Result<(), ClientError> {
        if self.client.is_none() {
            self.reconnect()?;
        }
        let Some(client) = self.client.as_mut() else {
            return Err(ClientError::InvalidConfig("not connected".into()));
        };
        match client.send(message) {
            Ok(()) => Ok(()),
            Err(err) if is_loss(&err) => {
                self.drop_connection();
                Err(ClientError::SendLost {
                    cause: Box::new(err),
                })
            }
            Err(err) => Err(err),
        }
    }

    /// Waits at most about `wait` for something to happen: a message, a
    /// loss, a reconnection. Reconnecting (with its back-off sleeps)
    /// happens inside this call and may take longer than `wait`.
    pub fn next_event(&mut self, wait: Duration) -> Result<Option<Event>, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        if self.client.is_none() {
            self.reconnect()?;
            return Ok(self.events.pop_front());
        }
        if let Some(lost) = self.keep_alive_step()? {
            return Ok(Some(lost));
        }
        let wait = match self.keep_alive_due() {
            Some(due) => wait.min(due.saturating_duration_since(Instant::now())),
            None => wait,
        };
        let Some(client) = self.client.as_mut() else {
            return Ok(None);
        };
        match client.receive_timeout(wait.max(Duration::from_millis(1))) {
            Ok(Some(message)) => Ok(Some(Event::Message(message))),
            Ok(None) => Ok(None),
            Err(err) if is_loss(&err) => {
                self.drop_connection();
                Ok(Some(Event::Disconnected(err)))
            }
            Err(err) => Err(err),
        }
    }

    /// Closes the current connection (if any) with the close handshake.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), ClientError> {
        match self.client.as_mut() {
            Some(client) => client.close(code, reason),
            None => Ok(()),
        }
    }

    /// Takes a message that arrived before the close reply (after
    /// [`close`](Self::close)), if any.
    pub fn receive_pending(&mut self) -> Option<Message> {
        self.client.as_mut()?.receive().ok()
    }

    /// Sends the keep-alive ping when due; reports a missed pong as a loss.
    fn keep_alive_step(&mut self) -> Result<Option<Event>, ClientError> {
        let (Some(keep), Some(client)) = (self.options.keep_alive, self.client.as_mut()) else {
            return Ok(None);
        };
        let now = Instant::now();
        if let Some(sent) = self.ping_sent {
            if client.last_pong().is_some_and(|p| p >= sent) {
                self.ping_sent = None;
            } else if now.duration_since(sent) >= keep.pong_timeout {
                client.abandon();
                self.drop_connection();
                return Ok(Some(Event::Disconnected(ClientError::Timeout {
                    what: "waiting for the keep-alive pong (the server stopped answering)".into(),
                    after: Some(keep.pong_timeout),
                })));
            }
        }
        if self.ping_sent.is_none() && self.next_ping.is_some_and(|t| now >= t) {
            match client.send_ping(b"wssd-keepalive") {
                Ok(()) => {
                    self.ping_sent = Some(now);
                    self.next_ping = Some(now + keep.interval);
                }
                Err(err) if is_loss(&err) => {
                    self.drop_connection();
                    return Ok(Some(Event::Disconnected(err)));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// The next moment the keep-alive needs attention.
    fn keep_alive_due(&self) -> Option<Instant> {
        let keep = self.options.keep_alive?;
        match self.ping_sent {
            Some(sent) => Some(sent + keep.pong_timeout),
            None => self.next_ping,
        }
    }

    fn reset_keep_alive(&mut self) {
        self.ping_sent = None;
        self.next_ping = self.options.keep_alive.map(|k| Instant::now() + k.interval);
    }

    fn drop_connection(&mut self) {
        if let Some(mut client) = self.client.take() {
            client.abandon();
        }
        self.ping_sent = None;
    }

    /// Connects again with back-off; queues [`Event::Reconnected`].
    fn reconnect(&mut self) -> Result<(), ClientError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            std::thread::sleep(self.options.backoff.delay(attempt));
            let result = Client::connect(&self.url, &self.config).and_then(|mut client| {
                if let Some(callback) = self.on_reconnect.as_mut() {
                    callback(&mut client)?;
                }
                Ok(client)
            });
            match result {
                Ok(client) => {
                    self.client = Some(client);
                    self.reset_keep_alive();
                    self.events
                        .push_back(Event::Reconnected { attempts: attempt });
                    return Ok(());
                }
                Err(err) if !is_retryable(&err) => return Err(err),
                Err(err) => {
                    log::debug!("reconnect attempt {attempt} to {} failed: {err}", self.url);
                    if self
                        .options
                        .backoff
                        .max_attempts
                        .is_some_and(|max| attempt >= max)
                    {
                        return Err(ClientError::ReconnectFailed {
                            attempts: attempt,
                            last: Box::new(err),
                        });
                    }
                }
            }
        }
    }
}

/// Whether `err` on an open connection means it was lost (and is worth
/// reconnecting), rather than closed on purpose or broken by a bug.
fn is_loss(err: &ClientError) -> bool {
    match err {
        ClientError::Closed { code, .. } => {
            matches!(code.as_u16(), 1001 | 1006 | 1011 | 1012 | 1013 | 1014)
        }
        ClientError::Io(_) => true,
        _ => false,
    }
}

/// Whether a failed connection attempt is worth repeating: the server
/// being down, restarting, overloaded or slow, but not a wrong URL or
/// configuration, or a refusal by the server's own rules (4xx other than
/// 408/429).
fn is_retryable(err: &ClientError) -> bool {
    match err {
        ClientError::InvalidUrl { .. }
        | ClientError::InvalidConfig(_)
        | ClientError::CaFile { .. }
        | ClientError::ProxyAuth { .. }
        | ClientError::Tls {
            verification: true, ..
        } => false,
        ClientError::HandshakeStatus { status, .. } => {
            !(400..500).contains(status) || matches!(status, 408 | 429)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloseCode;

    #[test]
    fn backoff_grows_caps_and_jitters_within_half() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            max_attempts: None,
        };
        assert_eq!(b.base(1), Duration::from_millis(100));
        assert_eq!(b.base(2), Duration::from_millis(200));
        assert_eq!(b.base(4), Duration::from_millis(800));
        assert_eq!(b.base(5), Duration::from_secs(1));
        assert_eq!(b.base(u32::MAX), Duration::from_secs(1));
        for attempt in 1..10 {
            let d = b.delay(attempt);
            assert!(d >= b.base(attempt) / 2 && d <= b.base(attempt), "{d:?}");
        }
    }

    #[test]
    fn what_counts_as_a_loss_and_as_retryable() {
        let closed = |code: u16| ClientError::Closed {
            code: CloseCode::new(code),
            reason: String::new(),
        };
        assert!(is_loss(&closed(1006)));
        assert!(is_loss(&closed(1001)));
        assert!(!is_loss(&closed(1000)));
        assert!(!is_loss(&closed(1008)));
        let status = |status| ClientError::HandshakeStatus {
            status,
            reason: String::new(),
            body: String::new(),
        };
        assert!(is_retryable(&status(503)));
        assert!(is_retryable(&status(429)));
        assert!(!is_retryable(&status(401)));
        assert!(is_retryable(&ClientError::ConnectionRefused {
            peer: "server",
            addr: "x".into()
        }));
        assert!(!is_retryable(&ClientError::InvalidConfig("x".into())));
    }
}
