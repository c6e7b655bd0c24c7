//! The handshake hook's answer ([`Decision`]) and the value it may attach
//! to the connection ([`ConnValue`]).

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A small value the handshake hook attaches to a connection, readable in
/// every later callback through [`Conn::value`](crate::Conn::value).
///
/// Any `Send + Sync + 'static` type fits (a user id, a struct of claims);
/// it is read back by type. It is an `Arc` so that the connection's
/// [`ConnInfo`](crate::ConnInfo) stays cheap to clone; values are only
/// read, never shared between connections by wssd.
#[derive(Clone, Default)]
pub struct ConnValue(Option<Arc<dyn Any + Send + Sync>>);

impl ConnValue {
    /// No value (the default).
    pub fn none() -> Self {
        ConnValue(None)
    }

    /// Wraps `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        ConnValue(Some(Arc::new(value)))
    }

    /// The value, if there is one of type `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|v| v.downcast_ref::<T>())
    }

    /// Whether a value is set.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for ConnValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("ConnValue(None)"),
            Some(_) => f.write_str("ConnValue(..)"),
        }
    }
}

/// The handshake hook's answer.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Open the WebSocket.
    Accept {
        /// The subprotocol to select; `None` keeps what the route's
        /// `subprotocols` list selected. It must be one the client offered.
        subprotocol: Option<String>,
        /// Extra headers for the 101 response (e.g. `Set-Cookie`).
        headers: Vec<(String, String)>,
        /// The per-connection value later callbacks read.
        value: ConnValue,
    },
    /// Refuse with an HTTP response; the connection is then closed.
    Reject {
        /// The HTTP status: 400 to 599 (anything else is sent as 500).
        status: u16,
        /// Extra headers, e.g. `WWW-Authenticate`, `Retry-After`.
        headers: Vec<(String, String)>,
        /// A short plain-text body (cut to [`MAX_REJECT_BODY`](super::MAX_REJECT_BODY) bytes).
        body: String,
    },
}

impl Default for Decision {
    fn default() -> Self {
        Decision::accept()
    }
}

impl Decision {
    /// Accept, as wssd does without a hook.
    pub fn accept() -> Self {
        Decision::Accept {
            subprotocol: None,
            headers: Vec::new(),
            value: ConnValue::none(),
        }
    }

    /// Reject with `status` (e.g. 401, 403, 429) and no body.
    pub fn reject(status: u16) -> Self {
        Decision::Reject {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// 401 with a `WWW-Authenticate: CHALLENGE` header (e.g. `Bearer`).
    pub fn unauthorized(challenge: &str) -> Self {
        Decision::reject(401).with_header("WWW-Authenticate", challenge)
    }

    /// 429 with `Retry-After` in whole seconds (at least 1).
    pub fn too_many_requests(retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Decision::reject(429).with_header("Retry-After", secs.max(1).to_string())
    }

    /// Adds a response header (to the 101 or the rejection).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        match &mut self {
            Decision::Accept { headers, .. } | Decision::Reject { headers, .. } => {
                headers.push((name.into(), value.into()))
            }
        }
        self
    }

    /// Selects `protocol` (accept only; ignored on a rejection).
    #[must_use]
    pub fn with_subprotocol(mut self, protocol: impl Into<String>) -> Self {
        if let Decision::Accept { subprotocol, .. } = &mut self {
            *subprotocol = Some(protocol.into());
        }
        self
    }

    /// Attaches the per-connection value (accept only).
    #[must_use]
    pub fn with_value<T: Any + Send + Sync>(mut self, v: T) -> Self {
        if let Decision::Accept { value, .. } = &mut self {
            *value = ConnValue::new(v);
        }
        self
    }

    /// Sets the body of a rejection (ignored on accept).
    #[must_use]
    pub fn with_body(mut self, text: impl Into<String>) -> Self {
        if let Decision::Reject { body, .. } = &mut self {
            *body = text.into();
        }
        self
    }
}
