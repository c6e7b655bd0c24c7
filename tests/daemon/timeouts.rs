//! Deadlines: a silent TCP connection is dropped after handshake_timeout,
//! an idle WebSocket after idle_timeout; others are unaffected.

use crate::support::*;
use std::io::Read;
use tungstenite::Message;

#[test]
fn silent_tcp_connection_is_closed_after_handshake_timeout() {
    let d = Daemon::start(&config("handshake_timeout = \"1s\"", ECHO));
    let mut silent = std::net::TcpStream::connect(d.addr).unwrap();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut partial = std::net::TcpStream::connect(d.addr).unwrap();
    partial.set_read_timeout(Some(DEADLINE)).unwrap();
    use std::io::Write;
    partial
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    // read returns 0 (EOF) or an error once the server drops us; a
    // timeout here would mean the deadline was not enforced.
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "not closed"),
    }
    assert!(matches!(partial.read(&mut buf), Ok(0) | Err(_)));
    d.wait_log_contains("handshake_timeout passed");
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("still serving"),
    );
}

#[test]
fn idle_connection_is_closed_with_1001_and_the_daemon_serves_on() {
    // (A peer that stays active is kept: see security_limits'
    // idle_peer_that_ignores_pings_is_closed_but_one_that_answers_is_not.)
    let d = Daemon::start(&config("idle_timeout = \"1s\"", ECHO));
    let mut idle = connect(&d.url("/echo"));
    assert_eq!(read_close_code(&mut idle), Some(1001));
    d.wait_log_contains("idle; closing it");
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("still serving"),
    );
}
