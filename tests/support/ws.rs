//! Talking to a server with tungstenite (the reference client) and with
//! raw bytes: connect, echo, read a close code, a raw HTTP exchange.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use tungstenite::{Message, WebSocket};

use super::DEADLINE;

/// A tungstenite client over plain TCP.
pub type Ws = WebSocket<TcpStream>;

/// Connects a tungstenite client; reads time out after `DEADLINE` so a
/// broken server fails the test instead of hanging it.
pub fn try_connect(url: &str) -> Result<Ws, String> {
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .ok_or("no host")?
        .to_string();
    let tcp = TcpStream::connect(&host).map_err(|e| format!("connect {host}: {e}"))?;
    tcp.set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    tungstenite::client(url, tcp)
        .map(|(ws, _)| ws)
        .map_err(|e| format!("handshake with {url}: {e}"))
}

/// Like [`try_connect`], failing the test on error.
pub fn connect(url: &str) -> Ws {
    try_connect(url).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `msg` and expects it back unchanged.
pub fn echo(ws: &mut Ws, msg: Message) {
    ws.send(msg.clone()).expect("send");
    let got = ws.read().expect("read echo");
    assert_eq!(got, msg, "echo mismatch");
}

/// The text of a message; fails the test for any other kind.
pub fn text(m: Message) -> String {
    match m {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until a Close frame arrives, answers it, and returns its code.
pub fn read_close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => {
                let _ = ws.flush(); // sends our close reply
                return f.map(|f| u16::from(f.code));
            }
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Sends raw bytes on a fresh TCP connection and returns everything the
/// server sends until it closes.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    String::from_utf8_lossy(&raw_exchange_bytes(addr, bytes)).into_owned()
}

/// [`raw_exchange`] as bytes.
pub fn raw_exchange_bytes(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// One HTTP/1.1 request on a fresh connection; the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let text = raw_exchange(addr, req.as_bytes());
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}
