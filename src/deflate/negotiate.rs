//! permessage-deflate negotiation (RFC 7692 §7.1) as pure functions over
//! header values: the server picks the first acceptable offer and renders
//! its answer; the client renders its offer and checks the answer.
//!
//! Both sides end with a [`Negotiated`]: the four RFC parameters as they
//! hold for this connection. [`Negotiated::outgoing`] and
//! [`Negotiated::incoming`] turn them into what one side's compressor and
//! decompressor must do.
//!
//! 8-bit windows: RFC 7692 allows `*_max_window_bits=8`, but zlib (and
//! zlib-rs) refuse to deflate raw streams with a 256-byte window (zlib
//! 1.2.9 turned 8 into an error because its 8-bit deflate really used
//! 512 bytes). Implementations that quietly deflate with 9 after agreeing
//! to 8 (Node's zlib, faye) can emit back-references a strict 8-bit
//! inflater rejects. wssd instead stays exact: it agrees to 8, and the
//! side that may only use 8 bits sends its messages uncompressed (RSV1
//! clear), which RFC 7692 §6 allows for any message. Inflating is done
//! with at least 9 bits, which reads any 8-bit stream (and the 9-bit
//! streams those other implementations send).

use std::fmt;

use super::header::{self, Element};
use super::Settings;

/// The extension token.
pub const EXTENSION: &str = "permessage-deflate";
/// The largest LZ77 window RFC 7692 allows (32 KiB), used when no
/// `*_max_window_bits` was negotiated.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window a header may name (256 bytes).
pub const MIN_WINDOW_BITS: u8 = 8;
/// The smallest window zlib-rs can deflate or inflate a raw stream with.
pub const MIN_CODEC_WINDOW_BITS: u8 = 9;

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection (compress with the `server_*` values).
    Server,
    /// We opened it (compress with the `client_*` values).
    Client,
}

/// The parameters in force on a connection, in RFC 7692 terms. Window
/// bits are 8..=15; 15 where the parameter was not negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The largest window the server's compressor may use.
    pub server_max_window_bits: u8,
    /// The largest window the client's compressor may use.
    pub client_max_window_bits: u8,
}

/// One direction of a connection: what its compressor may do, which is
/// what the other end's decompressor must be ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    /// The sender keeps its LZ77 window from one message to the next, so
    /// the receiver must keep its inflate state too.
    pub context_takeover: bool,
    /// The sender's largest window (8..=15).
    pub window_bits: u8,
}

impl Direction {
    /// Whether messages in this direction can be compressed at all: zlib
    /// cannot deflate with an 8-bit window, so such a sender sends every
    /// message uncompressed.
    pub fn can_compress(&self) -> bool {
        self.window_bits >= MIN_CODEC_WINDOW_BITS
    }

    /// The window an inflater needs for this direction: the sender's
    /// window, at least 9 bits (a larger window reads a smaller one's
    /// stream).
    pub fn inflate_window_bits(&self) -> u8 {
        self.window_bits.max(MIN_CODEC_WINDOW_BITS)
    }
}

impl Negotiated {
    /// The direction we send in.
    pub fn outgoing(&self, role: Role) -> Direction {
        match role {
            Role::Server => self.server_direction(),
            Role::Client => self.client_direction(),
        }
    }

    /// The direction we receive in.
    pub fn incoming(&self, role: Role) -> Direction {
        match role {
            Role::Server => self.client_direction(),
            Role::Client => self.server_direction(),
        }
    }

    fn server_direction(&self) -> Direction {
        Direction {
            context_takeover: !self.server_no_context_takeover,
            window_bits: self.server_max_window_bits,
        }
    }

    fn client_direction(&self) -> Direction {
        Direction {
            context_takeover: !self.client_no_context_takeover,
            window_bits: self.client_max_window_bits,
        }
    }
}

/// `client_max_window_bits` as a client may offer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientWindow {
    /// Not offered: the server must not limit the client's window.
    NotOffered,
    /// Offered without a value: the client accepts any limit the server names.
    Any,
    /// Offered with a value: the client will use at most this many bits.
    Max(u8),
}

/// The parameters of one offer or answer, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: ClientWindow,
}

/// Reads the parameters of one permessage-deflate element. `offer`
/// allows `client_max_window_bits` without a value, which only an offer
/// may carry (RFC 7692 §7.1.2.2).
fn read_params(element: &Element, offer: bool) -> Result<Params, String> {
    let mut p = Params {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: None,
        client_max_window_bits: ClientWindow::NotOffered,
    };
    let mut seen: Vec<&str> = Vec::with_capacity(4);
    for (name, value) in &element.params {
        let name = name.as_str();
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(format!("parameter {name} appears twice"));
        }
        seen.push(name);
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                p.server_max_window_bits = Some(window_bits(name, v)?)
            }
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits = ClientWindow::Max(window_bits(name, v)?)
            }
            ("client_max_window_bits", None) if offer => {
                p.client_max_window_bits = ClientWindow::Any
            }
            (
                "server_no_context_takeover"
                | "client_no_context_takeover"
                | "server_max_window_bits"
                | "client_max_window_bits",
                _,
            ) => {
                return Err(match value {
                    Some(v) => format!("parameter {name} takes no value, got \"{v}\""),
                    None => format!("parameter {name} needs a value from 8 to 15"),
                })
            }
            _ => return Err(format!("unknown parameter {name}")),
        }
    }
    Ok(p)
}

/// A window-bits value: a decimal 8..=15 without leading zeros (RFC 7692
/// §7.1.2.1).
fn window_bits(name: &str, value: &str) -> Result<u8, String> {
    match value.parse::<u8>() {
        Ok(n)
            if (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&n)
                && value.bytes().all(|b| b.is_ascii_digit())
                && !value.starts_with('0') =>
        {
            Ok(n)
        }
        _ => Err(format!(
            "parameter {name} has the value \"{value}\", not a number from 8 to 15"
        )),
    }
}

/// The server's decision: the parameters in force and the exact value of
/// the `Sec-WebSocket-Extensions` response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// What both sides now use.
    pub params: Negotiated,
    /// The response header value, e.g. `permessage-deflate;
    /// server_no_context_takeover; client_no_context_takeover`.
    pub response: String,
}

/// Server side: picks the first permessage-deflate offer in the request's
/// `Sec-WebSocket-Extensions` lines that `settings` can accept, or `None`
/// (answer without the header, no compression).
///
/// Offers that repeat a parameter, carry an unknown one or an invalid
/// value are declined, as RFC 7692 §7.1 requires; other extensions are
/// ignored. `settings.server_context_takeover = false` answers
/// `server_no_context_takeover` to every offer (§7.1.1.1 lets a server
/// add it), and `client_context_takeover = false` answers
/// `client_no_context_takeover`, so that no connection keeps deflate
/// state between messages.
pub fn accept_offer<'a>(
    request_lines: impl IntoIterator<Item = &'a str>,
    settings: &Settings,
) -> Option<Accepted> {
    header::parse(request_lines)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION))
        .find_map(|e| read_params(&e, true).ok().map(|p| answer(p, settings)))
}

/// The answer to one well-formed offer. Every offer is acceptable: each
/// parameter either fits the settings or can be narrowed by the server.
fn answer(offer: Params, s: &Settings) -> Accepted {
    let server_no_context_takeover = offer.server_no_context_takeover || !s.server_context_takeover;
    let client_no_context_takeover = offer.client_no_context_takeover || !s.client_context_takeover;
    // The server may always narrow its own window; it names the value
    // when the client asked or when it is below the default.
    let server_bits = offer
        .server_max_window_bits
        .map_or(s.server_max_window_bits, |n| {
            n.min(s.server_max_window_bits)
        });
    let name_server_bits = offer.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS;
    // The client's window may be limited only if it offered the parameter;
    // without a limit it may use 15 bits.
    let (client_bits, name_client_bits) = match offer.client_max_window_bits {
        ClientWindow::NotOffered => (MAX_WINDOW_BITS, false),
        ClientWindow::Any => (
            s.client_max_window_bits,
            s.client_max_window_bits < MAX_WINDOW_BITS,
        ),
        ClientWindow::Max(n) => (
            n.min(s.client_max_window_bits),
            s.client_max_window_bits < n,
        ),
    };
    let mut response = String::from(EXTENSION);
    if server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if name_server_bits {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    if name_client_bits {
        response.push_str(&format!("; client_max_window_bits={client_bits}"));
    }
    Accepted {
        params: Negotiated {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        },
        response,
    }
}

/// What a client offers. `ClientOffer::default()` is what browsers send:
/// `permessage-deflate; client_max_window_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOffer {
    /// Ask the server to reset its compressor after every message.
    pub server_no_context_takeover: bool,
    /// Tell the server we reset ours after every message.
    pub client_no_context_takeover: bool,
    /// Ask the server to use at most this window (8..=15).
    pub server_max_window_bits: Option<u8>,
    /// Whether and how we let the server limit our window.
    pub client_max_window_bits: ClientWindow,
}

impl Default for ClientOffer {
    fn default() -> Self {
        ClientOffer {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: ClientWindow::Any,
        }
    }
}

/// The server accepted permessage-deflate in a way RFC 7692 §7.1 says a
/// client must fail the connection for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerError(pub String);

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's Sec-WebSocket-Extensions answer is not acceptable: {} (connect without compression to work around a broken server)",
            self.0
        )
    }
}

impl std::error::Error for AnswerError {}

impl ClientOffer {
    /// The request header value, e.g. `permessage-deflate; client_max_window_bits`.
    pub fn header_value(&self) -> String {
        let mut v = String::from(EXTENSION);
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if let Some(n) = self.server_max_window_bits {
            v.push_str(&format!("; server_max_window_bits={n}"));
        }
        match self.client_max_window_bits {
            ClientWindow::NotOffered => {}
            ClientWindow::Any => v.push_str("; client_max_window_bits"),
            ClientWindow::Max(n) => v.push_str(&format!("; client_max_window_bits={n}")),
        }
        v
    }

    /// Checks the `Sec-WebSocket-Extensions` lines of the server's 101
    /// answer: `Ok(None)` when it declined (no compression), the
    /// parameters in force when it accepted, or the reason to fail the
    /// handshake: a malformed header, an extension we did not offer,
    /// permessage-deflate twice, an unknown, repeated or invalid
    /// parameter, `client_max_window_bits` we did not offer or larger
    /// than offered, `server_max_window_bits` larger than asked or
    /// missing when asked, or no `server_no_context_takeover` when asked.
    pub fn check_answer<'a>(
        &self,
        response_lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Negotiated>, AnswerError> {
        let mut found = None;
        for element in header::parse(response_lines) {
            let element = element.map_err(AnswerError)?;
            if !element.name.eq_ignore_ascii_case(EXTENSION) {
                return Err(AnswerError(format!(
                    "it accepted the extension {}, which was not offered",
                    element.name
                )));
            }
            if found.is_some() {
                return Err(AnswerError(format!("it accepted {EXTENSION} twice")));
            }
            let answer = read_params(&element, false).map_err(AnswerError)?;
            found = Some(self.settle(answer)?);
        }
        Ok(found)
    }

    /// The parameters in force given the server's answer to this offer.
    fn settle(&self, a: Params) -> Result<Negotiated, AnswerError> {
        if self.server_no_context_takeover && !a.server_no_context_takeover {
            return Err(AnswerError(
                "server_no_context_takeover was asked for and not confirmed".into(),
            ));
        }
        let server_max_window_bits = match (self.server_max_window_bits, a.server_max_window_bits) {
            (None, None) => MAX_WINDOW_BITS,
            (None, Some(m)) => m,
            (Some(n), None) => {
                return Err(AnswerError(format!(
                    "server_max_window_bits={n} was asked for and not confirmed"
                )))
            }
            (Some(n), Some(m)) if m > n => {
                return Err(AnswerError(format!(
                    "server_max_window_bits={m} is larger than the {n} asked for"
                )))
            }
            (Some(_), Some(m)) => m,
        };
        let client_max_window_bits = match (self.client_max_window_bits, a.client_max_window_bits) {
            (ClientWindow::NotOffered, ClientWindow::NotOffered) => MAX_WINDOW_BITS,
            (ClientWindow::NotOffered, _) => {
                return Err(AnswerError(
                    "client_max_window_bits was not offered, so the server may not set it".into(),
                ))
            }
            (ClientWindow::Any, ClientWindow::NotOffered) => MAX_WINDOW_BITS,
            (ClientWindow::Max(n), ClientWindow::NotOffered) => n,
            (ClientWindow::Any, ClientWindow::Max(m)) => m,
            (ClientWindow::Max(n), ClientWindow::Max(m)) if m > n => {
                return Err(AnswerError(format!(
                    "client_max_window_bits={m} is larger than the {n} offered"
                )))
            }
            (ClientWindow::Max(_), ClientWindow::Max(m)) => m,
            // read_params(offer = false) never yields Any for an answer.
            (_, ClientWindow::Any) => {
                return Err(AnswerError(
                    "client_max_window_bits needs a value in an answer".into(),
                ))
            }
        };
        Ok(Negotiated {
            server_no_context_takeover: a.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover
                || a.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }
}
