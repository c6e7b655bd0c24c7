//! The route's `subprotocols` list and the hook's decision combined into
//! what the worker does: the 101 with the selected subprotocol, or a
//! refusal; and the refusal of a per-address limit.

use super::{render_accept, render_reject, ConnValue, Decision};
use crate::handshake::Reject;
use crate::limits::Refusal;

/// The subprotocols offered in a request's `Sec-WebSocket-Protocol`
/// headers (`(name, value)` pairs): comma-separated tokens, across every
/// header line, in order.
pub fn offered_subprotocols<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Vec<&'h str> {
    headers
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// The first of the server's `preferred` subprotocols (in the server's
/// order) that the client `offered`. Names compare exactly (RFC 6455
/// tokens are case-sensitive).
pub fn select_subprotocol<'p>(preferred: &'p [String], offered: &[&str]) -> Option<&'p str> {
    preferred
        .iter()
        .find(|p| offered.contains(&p.as_str()))
        .map(String::as_str)
}

/// Applies a route's `subprotocols` list and `subprotocol_required` flag
/// to the request's headers (`(name, value)` pairs): the selected
/// subprotocol, or 400 when one is required and none of the route's was
/// offered.
pub fn negotiate_subprotocol<'h>(
    preferred: &[String],
    required: bool,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<Option<String>, Reject> {
    if preferred.is_empty() {
        // Nothing to select, nothing to require (most routes).
        return Ok(None);
    }
    let offered = offered_subprotocols(headers);
    match select_subprotocol(preferred, &offered) {
        Some(p) => Ok(Some(p.to_string())),
        None if required => Err(Reject::BadRequest(format!(
            "this route requires a subprotocol: offer one of {} in Sec-WebSocket-Protocol",
            preferred.join(", ")
        ))),
        None => Ok(None),
    }
}

/// What the worker does after the hook: the response bytes, and for an
/// accepted connection its subprotocol and value.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Send the 101 and open the connection.
    Open {
        /// The complete 101 response.
        response: Vec<u8>,
        /// The selected subprotocol.
        subprotocol: Option<String>,
        /// The hook's per-connection value.
        value: ConnValue,
    },
    /// Send this response and close.
    Refuse {
        /// The complete error response.
        response: Vec<u8>,
        /// Its status, for the log and the figures.
        status: u16,
    },
}

/// Combines the route's negotiated subprotocol with the hook's decision
/// into the bytes to send. `key` is the client's `Sec-WebSocket-Key`,
/// `headers` the request's `(name, value)` pairs.
///
/// A hook that selects a subprotocol the client did not offer is a bug in
/// the handler (the client would fail the handshake, RFC 6455 §4.1): the
/// request is refused with 500 and the reason logged.
pub fn conclude<'h>(
    key: &str,
    negotiated: Option<String>,
    extensions: Option<&str>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    decision: Decision,
) -> Outcome {
    match decision {
        Decision::Accept {
            subprotocol,
            headers: extra,
            value,
        } => {
            let selected = match subprotocol {
                None => negotiated,
                Some(p) => {
                    if !offered_subprotocols(headers).contains(&p.as_str()) {
                        log::error!(
                            "on_handshake selected subprotocol {p:?}, which the client did not offer; refusing with 500"
                        );
                        return Outcome::Refuse {
                            response: render_reject(
                                500,
                                &[],
                                "the server selected no usable subprotocol",
                            ),
                            status: 500,
                        };
                    }
                    Some(p)
                }
            };
            Outcome::Open {
                response: render_accept(key, selected.as_deref(), extensions, &extra),
                subprotocol: selected,
                value,
            }
        }
        Decision::Reject {
            status,
            headers,
            body,
        } => {
            let status = effective_status(status);
            Outcome::Refuse {
                response: render_reject(status, &headers, &body),
                status,
            }
        }
    }
}

/// The response to a connection refused by a per-address limit: 429 with
/// `Retry-After` (seconds, at least 1) for the connection cap and the
/// handshake rate, 503 with `Retry-After: 1` when the shared table is full.
pub fn refusal_response(refusal: &Refusal) -> (u16, Vec<u8>) {
    let (status, retry) = match refusal {
        Refusal::TooManyConnections { .. } => (429, 1),
        Refusal::RateLimited { retry_after } => (
            429,
            (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1),
        ),
        Refusal::TableFull => (503, 1),
    };
    let headers = [("Retry-After".to_string(), retry.to_string())];
    (
        status,
        render_reject(status, &headers, &format!("{refusal}\n")),
    )
}

/// `status` if it is an error status (400–599), else 500.
fn effective_status(status: u16) -> u16 {
    if (400..=599).contains(&status) {
        status
    } else {
        log::error!(
            "on_handshake rejected with status {status}, which is not 400-599; sending 500"
        );
        500
    }
}
