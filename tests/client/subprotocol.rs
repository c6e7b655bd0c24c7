//! Subprotocols on the client side (RFC 6455 §4.1): offered with
//! `--subprotocol` / `ClientConfig::with_subprotocol`, the selected one
//! reported; a server selecting none is accepted (Python `websockets`
//! and our own daemon on a route without subprotocols); a server selecting
//! one that was not offered fails the handshake. Also the CLI's `-v`,
//! `--count` and `--wait`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use crate::support::{config, Daemon, Output, ECHO};
use crate::{run_wssd, ws_server};
use wssd::client::{Client, ClientConfig, ClientError};

fn client(url: &str, extra: &[&str], stdin: &[u8]) -> Output {
    let mut args = vec!["client", url, "--timeout", "20"];
    args.extend_from_slice(extra);
    run_wssd(&args, stdin)
}

#[test]
fn selected_subprotocol_is_reported() {
    let server = ws_server();
    let out = client(
        &server.url("/"),
        &[
            "--subprotocol",
            "nope",
            "--subprotocol",
            "chat",
            "--send",
            "subprotocol?",
        ],
        b"",
    );
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "chat\n");
    assert_eq!(out.stderr, "wssd client: subprotocol: chat\n");
    // -q keeps it quiet.
    let out = client(
        &server.url("/"),
        &["-q", "--subprotocol", "chat", "--send", "subprotocol?"],
        b"",
    );
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stderr, "");
}

#[test]
fn a_server_selecting_none_is_accepted() {
    let server = ws_server();
    let out = client(
        &server.url("/"),
        &["--subprotocol", "mqtt", "--send", "subprotocol?"],
        b"",
    );
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "none\n");
    assert_eq!(
        out.stderr,
        "wssd client: the server selected no subprotocol\n"
    );

    let config = ClientConfig::default().with_subprotocol("mqtt");
    let mut c = Client::connect(&server.url("/"), &config).expect("connect");
    assert_eq!(c.subprotocol(), None);
    c.close(1000, "").unwrap();
}

#[test]
fn our_daemon_selecting_none_is_accepted() {
    let daemon = Daemon::start(&config("", ECHO));
    let out = client(
        &daemon.url("/echo"),
        &["--subprotocol", "chat", "--send", "hi"],
        b"",
    );
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "hi\n");
}

/// A raw server that answers the handshake with `Sec-WebSocket-Protocol:
/// chosen` whatever was offered; returns its port.
fn server_choosing(chosen: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            let key = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let _ = write!(
                s,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {chosen}\r\n\r\n"
            );
            let _ = s.read(&mut chunk);
        }
    });
    port
}

#[test]
fn a_subprotocol_that_was_not_offered_fails() {
    let port = server_choosing("evil");
    let out = client(
        &format!("ws://127.0.0.1:{port}/"),
        &["--subprotocol", "chat", "--send", "x"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "stdout {}", out.stdout);
    assert!(
        out.stderr.contains("\"evil\", which was not offered"),
        "{}",
        out.stderr
    );

    let port = server_choosing("chat");
    let config = ClientConfig::default();
    match Client::connect(&format!("ws://127.0.0.1:{port}/"), &config) {
        Err(ClientError::Handshake(why)) => assert!(why.contains("none was offered"), "{why}"),
        other => panic!("expected a handshake failure, got {other:?}"),
    }
}

#[test]
fn invalid_subprotocol_names_are_usage_errors() {
    let out = client(
        "ws://127.0.0.1:1/",
        &["--subprotocol", "a b", "--send", "x"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("not a valid name"), "{}", out.stderr);
}

#[test]
fn count_and_wait_keep_late_messages() {
    let server = ws_server();
    // Without either, one reply per --send: the other pushes are dropped.
    let out = client(&server.url("/"), &["--send", "push:3"], b"");
    assert_eq!(out.stdout, "push-1\n");
    let out = client(&server.url("/"), &["--send", "push:3", "--count", "3"], b"");
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "push-1\npush-2\npush-3\n");
    let out = client(&server.url("/"), &["--send", "push:3", "--wait", "2"], b"");
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "push-1\npush-2\npush-3\n");
    // Stdin mode: stop after the count.
    let out = client(&server.url("/"), &["--count", "2"], b"push:5\n");
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert!(out.stdout.starts_with("push-1\npush-2\n"), "{}", out.stdout);
}

#[test]
fn verbose_tells_the_close_code_and_reason() {
    let server = ws_server();
    let out = client(&server.url("/"), &["-v", "--send", "hi"], b"");
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert!(
        out.stderr.contains("wssd client: connected to ws://"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("wssd client: closed: code 1000"),
        "{}",
        out.stderr
    );
    let out = client(&server.url("/"), &["--send", "hi"], b"");
    assert_eq!(out.stderr, "");
    let out = client(&server.url("/"), &["-v", "-q", "--send", "hi"], b"");
    assert_eq!(out.status.code(), Some(2), "-v and -q conflict");
}

#[test]
fn short_flags_mean_one_thing() {
    // -c and -t belong to `wssd bench` (connections, threads); the daemon's
    // --config and --check have no short form.
    for flag in ["-c", "-t"] {
        let out = run_wssd(&[flag, "x.toml"], b"");
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", out.stderr);
        assert!(out.stderr.contains("unexpected argument"), "{}", out.stderr);
    }
}

#[test]
fn bad_reconnect_settings_are_usage_errors() {
    let out = client(
        "ws://127.0.0.1:1/",
        &["--reconnect", "--pong-timeout", "0"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--pong-timeout"), "{}", out.stderr);
    let out = client("ws://127.0.0.1:1/", &["--reconnect", "--send", "x"], b"");
    assert_eq!(out.status.code(), Some(2), "--reconnect is for stdin mode");
}
