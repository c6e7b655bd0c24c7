//! Our client against our daemon: the library (fragments, close codes)
//! and the CLI in both modes.

use crate::common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use wssd::client::{Client, ClientConfig, ClientError, Message};

#[test]
fn library_round_trips_a_fragmented_megabyte_and_sees_1001_on_shutdown() {
    let mut d = Daemon::start(&config("", ECHO));
    let cfg = ClientConfig::default().with_fragment_size(1000);
    let mut c = Client::connect(&d.url("/echo"), &cfg).expect("connect");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let reply = c.send_receive(Message::Binary(big.clone())).expect("echo");
    assert_eq!(reply, Message::Binary(big));
    assert_eq!(
        c.send_receive_text("héllo").unwrap(),
        Message::Text("héllo".into())
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    match c.receive() {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert_eq!(c.close_code(), Some(1001));
    assert_eq!(d.wait_exit(), Some(0));
}

#[test]
fn cli_send_mode_prints_each_reply_and_exits_0() {
    let d = Daemon::start(&config("", ECHO));
    let out = Command::new(wssd_bin())
        .args([
            "client",
            &d.url("/echo"),
            "--send",
            "one",
            "--send",
            "two",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
}

#[test]
fn cli_stdin_mode_talks_to_a_room() {
    let routes = "[[routes]]\npath = \"/room/{r}\"\nhandler = \"broadcast\"\n";
    let d = Daemon::start(&config("", routes));
    let mut child = Command::new(wssd_bin())
        .args(["client", &d.url("/room/cli"), "--timeout", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"first\nsecond\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");
}

#[test]
fn cli_reports_a_404_and_exits_non_zero() {
    let d = Daemon::start(&config("", ECHO));
    let out = Command::new(wssd_bin())
        .args([
            "client",
            &d.url("/missing"),
            "--send",
            "x",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404"), "{err}");
}
