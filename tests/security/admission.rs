//! Who gets in, end to end through the real daemon (examples/auth.rs):
//! the handshake hook's 401/403, subprotocol negotiation per route, the
//! per-connection value, per-address limits (429), X-Forwarded-For from
//! trusted and untrusted proxies, and the PROXY protocol header. Clients
//! are Python `websockets` (tests/support/wsadmit.py) and raw TCP.
//!
//! `cargo test` builds the examples; with `cargo test --test security`
//! alone, run `cargo build --examples` first or a stale example is tested.

use crate::support::tools::python_command;
use crate::support::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use tungstenite::Message;

const SECRET: &str = "test-secret";
/// 2100-01-01: far enough ahead for any test run.
const LATER: &str = "4102444800";

fn example_bin(name: &str) -> PathBuf {
    std::path::Path::new(wssd_bin())
        .parent()
        .expect("bin dir")
        .join("examples")
        .join(name)
}

/// A token for `user`, signed by the example itself.
fn token(user: &str, expiry: &str) -> String {
    let out = Command::new(example_bin("auth"))
        .args(["--sign", user, expiry])
        .env("AUTH_SECRET", SECRET)
        .output()
        .expect("run examples/auth --sign");
    assert!(out.status.success(), "auth --sign failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const ROUTES: &str = r#"
[[routes]]
path = "/chat"
handler = "auth"
subprotocols = ["chat.v2", "chat.v1"]

[[routes]]
path = "/strict"
handler = "auth"
subprotocols = ["chat.v2", "chat.v1"]
subprotocol_required = true

[[routes]]
path = "/admin/{*rest}"
handler = "auth"
"#;

/// The auth example with `server` extras and `limits` (a TOML table body).
fn auth(server: &str, limits: &str) -> Daemon {
    let routes = if limits.is_empty() {
        ROUTES.to_string()
    } else {
        format!("[limits]\n{limits}\n{ROUTES}")
    };
    Daemon::start_example_env("auth", &config(server, &routes), &[("AUTH_SECRET", SECRET)])
}

/// `wsadmit.py try URL args...`: its one line.
fn attempt(url: &str, args: &[&str]) -> String {
    let mut all = vec!["try", url];
    all.extend_from_slice(args);
    let out = run(python_command("support/wsadmit.py", &all), b"");
    assert!(
        out.status.success(),
        "wsadmit.py {all:?} failed: {}",
        out.stderr
    );
    out.stdout.trim().to_string()
}

#[test]
fn the_hook_refuses_with_status_headers_and_body() {
    let d = auth("", "");
    let missing = attempt(&d.url("/chat"), &[]);
    assert!(missing.starts_with("status 401 "), "{missing}");
    assert!(
        missing.contains("www-authenticate=Bearer realm=\"wssd\""),
        "{missing}"
    );
    assert!(missing.contains("body=a token is required"), "{missing}");

    // The same signature for another user.
    let signed = token("alice", LATER);
    let forged = signed.replacen("alice", "admin", 1);
    let bad = attempt(&d.url(&format!("/chat?token={forged}")), &[]);
    assert!(bad.starts_with("status 401 "), "{bad}");
    assert!(bad.contains("error=\"invalid_token\""), "{bad}");
    assert!(bad.ends_with("body=bad signature"), "{bad}");

    let expired = attempt(&d.url(&format!("/chat?token={}", token("alice", "1"))), &[]);
    assert!(expired.ends_with("body=token expired"), "{expired}");

    let alice = token("alice", LATER);
    let admin = attempt(&d.url(&format!("/admin/x?token={alice}")), &[]);
    assert!(admin.starts_with("status 403 "), "{admin}");
    assert!(
        admin.ends_with("body=this route is for admin only"),
        "{admin}"
    );

    // Raw HTTP: the whole response as sent.
    let raw = raw_exchange(d.addr, upgrade_request("/chat?token=nope", "").as_bytes());
    assert!(raw.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{raw}");
    assert!(
        raw.contains("\r\nWWW-Authenticate: Bearer realm=\"wssd\", error=\"invalid_token\"\r\n"),
        "{raw}"
    );
    assert!(raw.ends_with("\r\n\r\nmalformed token"), "{raw}");
}

#[test]
fn the_value_reaches_on_message_by_query_or_cookie() {
    let d = auth("", "");
    let alice = token("alice", LATER);
    let by_query = attempt(
        &d.url(&format!("/chat?token={alice}")),
        &["--send", "whoami"],
    );
    assert_eq!(by_query, "open - user=alice subprotocol=- peer=127.0.0.1");
    let cookie = format!("Cookie:theme=dark; token={}", token("bob", LATER));
    let by_cookie = attempt(&d.url("/chat"), &["--header", &cookie, "--send", "hi"]);
    assert_eq!(by_cookie, "open - bob: hi");
    let admin = token("admin", LATER);
    let ok = attempt(
        &d.url(&format!("/admin/x?token={admin}")),
        &["--send", "whoami"],
    );
    assert!(ok.starts_with("open - user=admin "), "{ok}");
}

#[test]
fn subprotocols_are_chosen_in_server_order() {
    let d = auth("", "");
    let url = d.url(&format!("/chat?token={}", token("alice", LATER)));
    // The client prefers v1; the server's order wins.
    let both = attempt(
        &url,
        &[
            "--proto", "chat.v1", "--proto", "chat.v2", "--send", "whoami",
        ],
    );
    assert_eq!(
        both,
        "open chat.v2 user=alice subprotocol=chat.v2 peer=127.0.0.1"
    );
    let one = attempt(
        &url,
        &["--proto", "other", "--proto", "chat.v1", "--send", "whoami"],
    );
    assert!(
        one.starts_with("open chat.v1 user=alice subprotocol=chat.v1 "),
        "{one}"
    );
    // None offered, none matching: opens without one (not required here).
    assert!(attempt(&url, &["--send", "whoami"]).starts_with("open - user=alice subprotocol=- "));
    let other = attempt(&url, &["--proto", "mqtt", "--send", "whoami"]);
    assert!(
        other.starts_with("open - user=alice subprotocol=- "),
        "{other}"
    );

    // Required: none offered or none matching is a 400 naming the choices.
    let strict = d.url(&format!("/strict?token={}", token("alice", LATER)));
    for args in [&[][..], &["--proto", "mqtt"][..]] {
        let refused = attempt(&strict, args);
        assert!(refused.starts_with("status 400 "), "{refused}");
        assert!(refused.contains("chat.v2, chat.v1"), "{refused}");
    }
    assert!(attempt(&strict, &["--proto", "chat.v1"]).starts_with("open chat.v1 "));
}

#[test]
fn the_sixth_connection_from_one_address_gets_429() {
    let d = auth("", "max_connections_per_ip = 5");
    let url = d.url(&format!("/chat?token={}", token("alice", LATER)));
    let held = PyProc::spawn(
        "support/wsadmit.py",
        &["hold", &url, "6", "--from", "127.0.0.2"],
    );
    for i in 0..5 {
        assert!(held.line().starts_with("open "), "connection {i}");
    }
    let sixth = held.line();
    assert!(sixth.starts_with("status 429 retry-after=1 "), "{sixth}");
    assert!(
        sixth.contains("body=this address already has 5 connections open"),
        "{sixth}"
    );
    assert_eq!(held.line(), "done");
    // Another address is not affected, nor the five that are open.
    let other = attempt(&url, &["--from", "127.0.0.3", "--send", "whoami"]);
    assert_eq!(other, "open - user=alice subprotocol=- peer=127.0.0.3");
    // Closing them gives the places back.
    drop(held);
    wait_for("127.0.0.2's connections to be released", || {
        attempt(&url, &["--from", "127.0.0.2"])
            .starts_with("open ")
            .then_some(())
    });
}

#[test]
fn handshake_rate_allows_a_burst_then_429() {
    let d = auth("", "handshake_rate_per_ip = \"1/h\"\nhandshake_burst = 3");
    let url = d.url(&format!("/chat?token={}", token("alice", LATER)));
    for i in 0..3 {
        let ok = attempt(&url, &["--from", "127.0.0.4"]);
        assert!(ok.starts_with("open "), "handshake {i}: {ok}");
    }
    let limited = attempt(&url, &["--from", "127.0.0.4"]);
    assert!(limited.starts_with("status 429 retry-after="), "{limited}");
    assert!(attempt(&url, &["--from", "127.0.0.5"]).starts_with("open "));
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let d = auth("", "trusted_proxies = [\"127.0.0.6/32\"]");
    let url = d.url(&format!("/chat?token={}", token("alice", LATER)));
    let xff = "X-Forwarded-For:198.51.100.1, 203.0.113.7";
    let trusted = attempt(
        &url,
        &["--from", "127.0.0.6", "--header", xff, "--send", "whoami"],
    );
    assert!(trusted.ends_with(" peer=203.0.113.7"), "{trusted}");
    let untrusted = attempt(
        &url,
        &["--from", "127.0.0.7", "--header", xff, "--send", "whoami"],
    );
    assert!(untrusted.ends_with(" peer=127.0.0.7"), "{untrusted}");
}

/// Writes `header` then opens a WebSocket on the same TCP connection and
/// asks `whoami`.
fn whoami_behind(d: &Daemon, header: &[u8], path: &str) -> String {
    let mut tcp = TcpStream::connect(d.addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(header).unwrap();
    let (mut ws, _) = tungstenite::client(d.url(path), tcp).expect("handshake behind a header");
    ws.send(Message::text("whoami")).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => t.to_string(),
        other => panic!("{other:?}"),
    }
}

/// Sends `bytes`, half-closes, and returns what the server sent before
/// it closed.
fn closed_after(d: &Daemon, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(d.addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(bytes).unwrap();
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    out
}

/// A v2 PROXY header for TCP over IPv4 from `src`:`sport`.
fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

#[test]
fn proxy_protocol_names_the_client_and_bad_headers_close() {
    let d = auth("proxy_protocol = true", "max_connections_per_ip = 5");
    let path = format!("/chat?token={}", token("alice", LATER));
    let v1 = whoami_behind(&d, b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n", &path);
    assert!(v1.ends_with(" peer=198.51.100.9"), "{v1}");
    let v2 = whoami_behind(&d, &v2_header([192, 0, 2, 44], 4444), &path);
    assert!(v2.ends_with(" peer=192.0.2.44"), "{v2}");

    // One connection stays open through the bad ones.
    let mut tcp = TcpStream::connect(d.addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(b"PROXY TCP4 198.51.100.10 127.0.0.1 1 80\r\n")
        .unwrap();
    let (mut kept, _) = tungstenite::client(d.url(&path), tcp).unwrap();

    let request = upgrade_request(&path, "");
    let truncated_v2 = &v2_header([192, 0, 2, 45], 1)[..20];
    for bad in [
        b"PROXY TCP4 198.51".as_slice(),
        truncated_v2,
        request.as_bytes(),
        b"PROXY TCP4 nonsense here 1 2\r\n",
        b"\x16\x03\x01\x00\xa5garbage",
    ] {
        let answer = closed_after(&d, bad);
        assert!(
            answer.is_empty(),
            "{bad:?} got {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    kept.send(Message::text("still here")).unwrap();
    assert_eq!(kept.read().unwrap(), Message::text("alice: still here"));
    // The PROXY address is what the limits count.
    let header = b"PROXY TCP4 198.51.100.11 127.0.0.1 1 80\r\n";
    let mut five: Vec<_> = (0..5)
        .map(|_| {
            let mut t = TcpStream::connect(d.addr).unwrap();
            t.set_read_timeout(Some(DEADLINE)).unwrap();
            t.write_all(header).unwrap();
            tungstenite::client(d.url(&path), t).unwrap().0
        })
        .collect();
    let mut request = header.to_vec();
    request.extend_from_slice(upgrade_request(&path, "").as_bytes());
    let sixth = raw_exchange(d.addr, &request);
    assert!(sixth.starts_with("HTTP/1.1 429 "), "{sixth}");
    assert!(sixth.contains("\r\nRetry-After: 1\r\n"), "{sixth}");
    for ws in &mut five {
        ws.send(Message::text("ok")).unwrap();
    }
}
