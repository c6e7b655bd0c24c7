//! Our client against our daemon: the library (fragments, close codes)
//! and the CLI in both modes.

use crate::support::*;
use std::process::Command;
use wssd::client::{Client, ClientConfig, ClientError, CloseCode, Message};

/// Runs `wssd client ARGS --timeout 60` with `stdin`.
fn wssd_client(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(wssd_bin());
    let timeout = DEADLINE.as_secs().to_string();
    cmd.arg("client").args(args).args(["--timeout", &timeout]);
    run(cmd, stdin)
}

#[test]
fn library_round_trips_a_fragmented_megabyte_and_sees_1001_on_shutdown() {
    let mut d = Daemon::start(&config("", ECHO));
    let cfg = ClientConfig::default().with_fragment_size(1000);
    let mut c = Client::connect(&d.url("/echo"), &cfg).expect("connect");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let reply = c.send_receive(Message::binary(big.clone())).expect("echo");
    assert_eq!(reply, Message::binary(big));
    assert_eq!(
        c.send_receive_text("héllo").unwrap(),
        Message::text("héllo")
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    match c.receive() {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, CloseCode::AWAY),
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert_eq!(c.close_code(), Some(CloseCode::AWAY));
    assert_eq!(d.wait_exit(), Some(0));
}

#[test]
fn cli_send_mode_prints_each_reply_and_exits_0() {
    let d = Daemon::start(&config("", ECHO));
    let out = wssd_client(&[&d.url("/echo"), "--send", "one", "--send", "two"], b"");
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "one\ntwo\n");
}

#[test]
fn cli_stdin_mode_talks_to_a_room() {
    let routes = "[[routes]]\npath = \"/room/{r}\"\nhandler = \"broadcast\"\n";
    let d = Daemon::start(&config("", routes));
    let out = wssd_client(&[&d.url("/room/cli")], b"first\nsecond\n");
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "first\nsecond\n");
}

#[test]
fn cli_reports_a_404_and_exits_non_zero() {
    let d = Daemon::start(&config("", ECHO));
    let out = wssd_client(&[&d.url("/missing"), "--send", "x"], b"");
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("404"), "{}", out.stderr);
}
