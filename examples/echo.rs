//! The smallest embedding: an echo server with the daemon's full process
//! model (workers, reload, drain).
//!
//! ```sh
//! cargo run --example echo -- config/embedded.toml
//! cargo run -- client ws://127.0.0.1:8080/ws --send hello
//! ```

use wssd::{Conn, Handler, HandlerResult, Message, Server};

/// Sends every message back to its sender.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult {
        conn.send(message);
        Ok(())
    }
}

fn main() {
    let config = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "config/embedded.toml".into());
    let result = Server::from_config_file(&config).and_then(|s| s.route("/ws", || Echo).run());
    if let Err(e) = result {
        eprintln!("echo: {e}");
        std::process::exit(e.exit_status());
    }
}
