//! A route's own `max_message_size` governs everything about its messages,
//! also when it is larger than the global one: receiving them and sending
//! them back (issue 10, point 7: the send bound used the global limit, so
//! the echo of a message the route allowed dropped the connection).

use crate::support::frames::{client_frame, BINARY, CONT};
use crate::support::*;

use std::io::{Read, Write};
use std::net::TcpStream;

const MIB: usize = 1 << 20;

/// Reads exactly `n` bytes, panicking with `what` if the server hangs up.
fn read_exact(tcp: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if let Err(e) = tcp.read_exact(&mut buf) {
        panic!("the server did not send {what} ({n} bytes): {e}");
    }
    buf
}

#[test]
fn a_route_limit_above_the_global_one_echoes_a_message_of_that_size() {
    // Global defaults (16 MiB messages and frames, 16 MiB send buffer); the
    // route allows 64 MiB messages.
    let route = "[[routes]]\npath = \"/big\"\nhandler = \"echo\"\nmax_message_size = \"64MiB\"\n";
    let d = Daemon::start(&config("workers = 1", route));
    let mut tcp = TcpStream::connect(d.addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(upgrade_request("/big", "").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_exact(&mut tcp, 1, "the response head"));
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    // 40 MiB in fragments under the 16 MiB frame limit.
    let message: Vec<u8> = (0..40 * MIB).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<&[u8]> = message.chunks(15 * MIB).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { BINARY } else { CONT };
        let fin = i == pieces.len() - 1;
        tcp.write_all(&client_frame(fin, opcode, piece))
            .expect("send a fragment");
    }

    let h = read_exact(&mut tcp, 2, "the echo's frame header");
    assert_eq!(h[0], 0x80 | BINARY, "expected one final binary frame");
    assert_eq!(h[1], 127, "expected a 64-bit length");
    let len = u64::from_be_bytes(read_exact(&mut tcp, 8, "the length").try_into().unwrap());
    assert_eq!(len, message.len() as u64);
    let payload = read_exact(&mut tcp, message.len(), "the echoed payload");
    assert!(payload == message, "the echo differs from the message");
    assert_eq!(
        d.log_count("disconnecting it"),
        0,
        "the connection was dropped"
    );
}
