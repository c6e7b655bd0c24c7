//! A diagnostic handler: replies with what it knows about the connection,
//! and exercises broadcasts, delays and failure isolation on request.
//! wssd's own tests drive it; it is also handy for checking what a proxy
//! in front of wssd forwards.
//!
//! Messages it understands (anything else is echoed):
//! - `info`: a line `id=.. pid=.. route=.. path=.. query=.. params=k:v,..
//!   header:NAME=..` for every request header;
//! - `all TEXT`, `route TEXT`, `room TEXT`: broadcast TEXT to that scope;
//! - `many N MS TEXT`: broadcast N numbered messages to the room, MS apart;
//! - `panic`: panics inside the handler (the connection gets 1011);
//! - `fail`: returns an error (logged, passed to on_error).
//!
//! With `INSPECT_PANIC_ON_START=1` in the environment, every worker panics
//! while creating its handlers: a way to watch the master's restart
//! back-off (100 ms, 200 ms, 400 ms, ... up to 10 s).
//!
//! ```sh
//! cargo run --example inspect -- config/embedded.toml
//! cargo run -- client 'ws://127.0.0.1:8080/inspect/a/b?x=1' --send info
//! ```

use std::time::Duration;

use wssd::{Conn, Handler, HandlerResult, Message, Scope, Server};

struct Inspect;

impl Default for Inspect {
    fn default() -> Self {
        assert!(
            std::env::var_os("INSPECT_PANIC_ON_START").is_none(),
            "INSPECT_PANIC_ON_START is set"
        );
        Inspect
    }
}

fn info(conn: &Conn<'_>) -> String {
    let params: Vec<String> = conn.params().map(|(k, v)| format!("{k}:{v}")).collect();
    let headers: Vec<String> = conn
        .headers()
        .map(|(k, v)| format!("header:{}={v}", k.to_ascii_lowercase()))
        .collect();
    format!(
        "id={} pid={} route={} path={} query={} params={} peer={} {}",
        conn.id(),
        std::process::id(),
        conn.route(),
        conn.path(),
        conn.query(),
        params.join(","),
        conn.peer_addr(),
        headers.join(" ")
    )
}

impl Handler for Inspect {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult {
        let text = match &message {
            Message::Text(text) => text.clone(),
            Message::Binary(_) => {
                conn.send(message);
                return Ok(());
            }
        };
        let (cmd, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        match cmd {
            "info" => conn.send_text(info(conn)),
            "all" => conn.broadcast(Scope::All, Message::text(rest)),
            "route" => conn.broadcast(Scope::Route, Message::text(rest)),
            "room" => conn.broadcast(Scope::Room, Message::text(rest)),
            "many" => {
                let mut parts = rest.splitn(3, ' ');
                let n: usize = parts.next().unwrap_or("").parse()?;
                let ms: u64 = parts.next().unwrap_or("").parse()?;
                let body = parts.next().unwrap_or("");
                let messages = (1..=n)
                    .map(|i| Message::text(format!("{body} {i}")))
                    .collect();
                conn.broadcast_many(Scope::Room, messages, Duration::from_millis(ms));
            }
            "panic" => panic!("inspect was asked to panic"),
            "fail" => return Err("inspect was asked to fail".into()),
            _ => conn.send(message),
        }
        Ok(())
    }
}

fn main() {
    let config = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "config/embedded.toml".into());
    let result = Server::from_config_file(&config).and_then(|s| {
        s.route("/inspect/{*rest}", Inspect::default)
            .route("/room/{room}", Inspect::default)
            .route(
                "/notifications/{entity}/{context}/{token}",
                Inspect::default,
            )
            .run()
    });
    if let Err(e) = result {
        eprintln!("inspect: {e}");
        std::process::exit(e.exit_status());
    }
}
