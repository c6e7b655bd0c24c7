//! `POST /publish`: a backend pushes a message into a room, a route or
//! everyone, without a WebSocket. The body is JSON:
//! `{"path": "/chat/lobby", "message": "text"}` or `"binary_base64"`
//! instead of `"message"`, and `"scope": "room" | "route" | "all"`
//! (default `room`). The master resolves `path` against the current
//! generation's routes and sends one relay frame to every worker and to
//! the cluster helper, exactly as a handler's broadcast travels.

use base64::Engine as _;
use serde::Deserialize;

use crate::app::App;
use crate::message::Message;
use crate::relay::RoomKey;

/// The body as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    path: String,
    message: Option<String>,
    binary_base64: Option<String>,
    scope: Option<String>,
}

/// Why a publish request is refused: an HTTP status and a reason.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refused(pub u16, pub String);

/// Parses and resolves a publish body: the room key and the message.
pub(super) fn parse(body: &[u8], app: &App) -> Result<(RoomKey, Message), Refused> {
    let bad = |why: String| Refused(400, why);
    let body: Body = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "body is not {{\"path\": ..., \"message\"|\"binary_base64\": ..., \"scope\": ...}}: {e}"
        ))
    })?;
    let message = match (body.message, body.binary_base64) {
        (Some(text), None) => Message::text(text),
        (None, Some(b64)) => Message::binary(
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| bad(format!("binary_base64 is not base64: {e}")))?,
        ),
        (Some(_), Some(_)) => {
            return Err(bad(
                "give either \"message\" or \"binary_base64\", not both".into(),
            ))
        }
        (None, None) => return Err(bad("\"message\" or \"binary_base64\" is missing".into())),
    };
    let (m, params) = app
        .routes
        .find(&body.path)
        .ok_or_else(|| bad(format!("no route serves {}", body.path)))?;
    if message.len() > m.target.max_message_size {
        return Err(Refused(
            413,
            format!(
                "message of {} bytes is over the route's max_message_size {}",
                message.len(),
                m.target.max_message_size
            ),
        ));
    }
    let route = m.template.as_str().to_string();
    let key = match body.scope.as_deref().unwrap_or("room") {
        "room" => RoomKey::Room(route, params.into_iter().map(|(_, v)| v).collect()),
        "route" => RoomKey::Route(route),
        "all" => RoomKey::All,
        other => {
            return Err(bad(format!(
                "scope \"{other}\" is not one of \"room\", \"route\", \"all\""
            )))
        }
    };
    Ok((key, message))
}
