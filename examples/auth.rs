//! Authenticating a WebSocket before it opens: the handshake hook accepts
//! only a valid HMAC-signed token, from the query (`?token=...`) or a
//! cookie (`Cookie: token=...`), and rejects anything else with 401 and a
//! `WWW-Authenticate` challenge; routes under `/admin` also want the user
//! `admin` (403 otherwise). The user becomes the connection's value, read
//! back in `on_message`.
//!
//! A token is `USER.EXPIRY.SIGNATURE`: EXPIRY in Unix seconds, SIGNATURE
//! the lowercase hex HMAC-SHA256 of `USER.EXPIRY` under the secret in
//! `AUTH_SECRET`. The check is a pure computation, so it is fine in the
//! hook (which must not block); a check that needs a database would
//! accept, verify in `on_open`, and close with 1008.
//!
//! ```sh
//! export AUTH_SECRET=change-me
//! TOKEN=$(cargo run --example auth -- --sign alice 4102444800)
//! cargo run --example auth -- config/auth.toml &
//! cargo run -- client "ws://127.0.0.1:8080/chat?token=$TOKEN" --send whoami
//! ```
//!
//! The handler is registered by name (`handler = "auth"`), so the routes,
//! their subprotocols and the `[limits]` come from the configuration.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use wssd::admission::{Decision, HandshakeRequest};
use wssd::{Conn, Handler, HandlerResult, Message, Server};

/// Who a connection authenticated as: its per-connection value.
struct User(String);

/// The handler: holds the secret tokens are signed with.
struct Auth {
    secret: Vec<u8>,
}

impl Auth {
    fn from_env() -> Auth {
        let secret = std::env::var("AUTH_SECRET").unwrap_or_default();
        assert!(
            !secret.is_empty(),
            "auth: set AUTH_SECRET to the secret tokens are signed with"
        );
        Auth {
            secret: secret.into_bytes(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    /// `USER.EXPIRY.SIGNATURE` for `user`, valid until `expiry`.
    fn sign(&self, user: &str, expiry: u64) -> String {
        let claims = format!("{user}.{expiry}");
        let mut mac = self.mac();
        mac.update(claims.as_bytes());
        let sig = data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes());
        format!("{claims}.{sig}")
    }

    /// The user a token names, or why it is not valid.
    fn verify(&self, token: &str, now: u64) -> Result<String, &'static str> {
        let (claims, sig) = token.rsplit_once('.').ok_or("malformed token")?;
        let (user, expiry) = claims.rsplit_once('.').ok_or("malformed token")?;
        let sig = data_encoding::HEXLOWER_PERMISSIVE
            .decode(sig.as_bytes())
            .map_err(|_| "malformed signature")?;
        let mut mac = self.mac();
        mac.update(claims.as_bytes());
        // Compared in constant time.
        mac.verify_slice(&sig).map_err(|_| "bad signature")?;
        let expiry: u64 = expiry.parse().map_err(|_| "malformed expiry")?;
        if expiry <= now {
            return Err("token expired");
        }
        Ok(user.to_string())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Handler for Auth {
    fn on_handshake(&mut self, req: &HandshakeRequest<'_>) -> Decision {
        let token = req
            .query_param("token")
            .or_else(|| req.cookie("token").map(str::to_string));
        let Some(token) = token else {
            return Decision::unauthorized("Bearer realm=\"wssd\"")
                .with_body("a token is required: ?token=... or Cookie: token=...");
        };
        let user = match self.verify(&token, now()) {
            Ok(user) => user,
            Err(why) => {
                return Decision::unauthorized("Bearer realm=\"wssd\", error=\"invalid_token\"")
                    .with_body(why)
            }
        };
        if req.route().starts_with("/admin") && user != "admin" {
            return Decision::reject(403).with_body("this route is for admin only");
        }
        Decision::accept().with_value(User(user))
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) -> HandlerResult {
        let user = conn.value::<User>().map_or("?", |u| u.0.as_str());
        let Message::Text(text) = message else {
            return Ok(());
        };
        if text.as_str() == "whoami" {
            let reply = format!(
                "user={user} subprotocol={} peer={}",
                conn.subprotocol().unwrap_or("-"),
                conn.peer_addr().ip()
            );
            conn.send(Message::text(reply));
        } else {
            conn.send(Message::text(format!("{user}: {}", text.as_str())));
        }
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, user, expiry] = args.as_slice() {
        if flag == "--sign" {
            let Ok(expiry) = expiry.parse() else {
                eprintln!("auth: --sign USER EXPIRY: EXPIRY is Unix seconds");
                std::process::exit(2);
            };
            println!("{}", Auth::from_env().sign(user, expiry));
            return;
        }
    }
    let config = args
        .first()
        .cloned()
        .unwrap_or_else(|| "config/auth.toml".into());
    let result =
        Server::from_config_file(&config).and_then(|s| s.handler("auth", Auth::from_env).run());
    if let Err(e) = result {
        eprintln!("auth: {e}");
        std::process::exit(e.exit_status());
    }
}
