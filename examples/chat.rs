//! Chat rooms: `/chat/{room}?name=alice`. Members get join and leave
//! notices; `/who` lists the members of the room; anything else is said
//! to the room (on every worker).
//!
//! The member list is per-worker state kept in the handler itself: one
//! `Chat` value serves all connections of the route in its worker, so the
//! list is a plain field. It lists the members connected to the same
//! worker; run with `workers = 1` (as config/embedded.toml does) for a
//! complete list, or relay presence with broadcasts.
//!
//! ```sh
//! cargo run --example chat -- config/embedded.toml
//! cargo run -- client 'ws://127.0.0.1:8080/chat/lobby?name=alice'
//! ```

use std::collections::BTreeMap;

use wssd::{CloseCode, Conn, ConnId, Handler, HandlerResult, Message, Scope, Server};

/// Rooms of one worker: room name → (connection → member name).
#[derive(Default)]
struct Chat {
    rooms: BTreeMap<String, BTreeMap<ConnId, String>>,
}

impl Chat {
    fn new() -> Chat {
        Chat::default()
    }

    fn room(conn: &Conn<'_>) -> String {
        conn.param("room").unwrap_or("").to_string()
    }

    /// `name=` from the query string, or a name made from the id.
    fn name(conn: &Conn<'_>) -> String {
        conn.query()
            .split('&')
            .find_map(|kv| kv.strip_prefix("name="))
            .filter(|n| !n.is_empty())
            .map(|n| {
                percent_encoding::percent_decode_str(n)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| format!("guest-{}", conn.id()))
    }
}

impl Handler for Chat {
    fn on_open(&mut self, conn: &mut Conn<'_>) -> HandlerResult {
        let (room, name) = (Chat::room(conn), Chat::name(conn));
        conn.broadcast_others(
            Scope::Room,
            Message::text(format!("* {name} joined {room}")),
        );
        conn.send_text(format!("* welcome to {room}, {name}"));
        self.rooms.entry(room).or_default().insert(conn.id(), name);
        Ok(())
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult {
        let room = Chat::room(conn);
        let members = self.rooms.get(&room);
        let name = members
            .and_then(|m| m.get(&conn.id()))
            .cloned()
            .unwrap_or_default();
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                conn.close(CloseCode::UNSUPPORTED, "text only");
                return Ok(());
            }
        };
        if text.trim() == "/who" {
            let list: Vec<&str> = members
                .map(|m| m.values().map(String::as_str).collect())
                .unwrap_or_default();
            conn.send_text(format!("* members: {}", list.join(", ")));
        } else {
            conn.broadcast(Scope::Room, Message::text(format!("{name}: {text}")));
        }
        Ok(())
    }

    fn on_close(&mut self, conn: &mut Conn<'_>, _code: Option<CloseCode>, _reason: &str) {
        let room = Chat::room(conn);
        let Some(members) = self.rooms.get_mut(&room) else {
            return;
        };
        if let Some(name) = members.remove(&conn.id()) {
            conn.broadcast_others(Scope::Room, Message::text(format!("* {name} left {room}")));
        }
        if members.is_empty() {
            self.rooms.remove(&room);
        }
    }
}

fn main() {
    let config = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "config/embedded.toml".into());
    let result =
        Server::from_config_file(&config).and_then(|s| s.route("/chat/{room}", Chat::new).run());
    if let Err(e) = result {
        eprintln!("chat: {e}");
        std::process::exit(e.exit_status());
    }
}
