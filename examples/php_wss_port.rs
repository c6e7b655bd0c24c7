//! The `ServerHandler` of php-wss's README, carried over to wssd.
//!
//! php-wss declares `$pathParams = [':entity', ':context', ':token']` and
//! keeps `$clients` keyed by socket id; its `onMessage` echoes. Here the
//! path parameters are named in the route template and belong to each
//! connection (php-wss stored them on the shared handler, where each
//! connection overwrote the previous one's).
//!
//! ```sh
//! cargo run --example php_wss_port -- config/embedded.toml
//! cargo run -- client ws://127.0.0.1:8080/notifications/messanger/vpn/abc123 --send hi
//! ```

use std::collections::HashMap;

use wssd::{CloseCode, Conn, ConnId, Handler, HandlerError, HandlerResult, Message, Server};

/// What php-wss kept in `$this->clients[$conn->getUniqueSocketId()]`.
struct Client {
    peer: String,
    entity: String,
}

/// php-wss's `ServerHandler extends WebSocket`.
#[derive(Default)]
struct ServerHandler {
    clients: HashMap<ConnId, Client>,
}

impl Handler for ServerHandler {
    fn on_open(&mut self, conn: &mut Conn<'_>) -> HandlerResult {
        let client = Client {
            peer: conn.peer_addr().to_string(),
            entity: conn.param("entity").unwrap_or("").to_string(),
        };
        log::info!(
            "connection opened: {} from {} (entity {}, context {}, token {})",
            conn.id(),
            client.peer,
            client.entity,
            conn.param("context").unwrap_or(""),
            conn.param("token").unwrap_or("")
        );
        self.clients.insert(conn.id(), client);
        Ok(())
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult {
        let entity = self
            .clients
            .get(&conn.id())
            .map_or("", |c| c.entity.as_str());
        // php-wss: $recv->send('Message from ' . $entity . ': ' . $msg)
        conn.send_text(format!("Message from {entity}: {}", message.to_text()?));
        Ok(())
    }

    fn on_close(&mut self, conn: &mut Conn<'_>, code: Option<CloseCode>, _reason: &str) {
        if let Some(c) = self.clients.remove(&conn.id()) {
            log::info!("close: {} from {} ({code:?})", conn.id(), c.peer);
        }
    }

    fn on_error(&mut self, conn: &mut Conn<'_>, error: &HandlerError) {
        log::warn!("error on {}: {error}", conn.id());
        conn.close(CloseCode::ERROR, "internal error");
    }
}

fn main() {
    let config = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "config/embedded.toml".into());
    let result = Server::from_config_file(&config).and_then(|s| {
        s.route(
            "/notifications/{entity}/{context}/{token}",
            ServerHandler::default,
        )
        .run()
    });
    if let Err(e) = result {
        eprintln!("php_wss_port: {e}");
        std::process::exit(e.exit_status());
    }
}
