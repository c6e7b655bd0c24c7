//! Deadlines: a silent TCP connection is dropped after handshake_timeout,
//! an idle WebSocket after idle_timeout; a client connected before and
//! still active keeps being served.

use crate::support::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tungstenite::Message;

#[test]
fn silent_tcp_connection_is_closed_after_handshake_timeout() {
    let d = Daemon::start(&config("handshake_timeout = \"1s\"", ECHO));
    // Upgraded before the slow ones come: the handshake deadline is not its.
    let mut other = connect(&d.url("/echo"));
    echo(&mut other, Message::text("before"));
    let mut silent = std::net::TcpStream::connect(d.addr).unwrap();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut partial = std::net::TcpStream::connect(d.addr).unwrap();
    partial.set_read_timeout(Some(DEADLINE)).unwrap();
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
    echo(&mut other, Message::text("after"));
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("still serving"),
    );
}

#[test]
fn idle_connection_is_closed_with_1001_and_the_daemon_serves_on() {
    // (A peer that answers pings is kept: see security's
    // idle_peer_that_ignores_pings_is_closed_but_one_that_answers_is_not.)
    let d = Daemon::start(&config("idle_timeout = \"3s\"", ECHO));
    // An active client, connected first, echoes without pause until the
    // idle one is closed: activity resets its own idle deadline only.
    let mut active = connect(&d.url("/echo"));
    echo(&mut active, Message::text("first"));
    let mut idle = connect(&d.url("/echo"));
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let talker = std::thread::spawn(move || {
        let mut n = 0u64;
        let start = std::time::Instant::now();
        while !stop.load(Ordering::Acquire) && start.elapsed() < DEADLINE {
            echo(&mut active, Message::text(format!("active {n}")));
            n += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (active, n)
    });
    assert_eq!(read_close_code(&mut idle), Some(1001));
    done.store(true, Ordering::Release);
    let (mut active, n) = talker.join().expect("the active client kept echoing");
    assert!(n > 0);
    d.wait_log_contains("idle; closing it");
    echo(&mut active, Message::text("after"));
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("still serving"),
    );
}
