//! Limits: origin allow-list, message size, idle pings, slow readers,
//! many clients, privilege drop.

use crate::support::frames::{head_end, parse_all, PING};
use crate::support::*;
use std::io::{Read, Write};
use std::time::Duration;
use tungstenite::Message;

#[test]
fn origin_allow_list_gives_403_before_the_upgrade() {
    let d = Daemon::start(&config(
        "allowed_origins = [\"https://example.com\", \"https://*.example.org\"]",
        ECHO,
    ));
    let missing = raw_exchange(d.addr, upgrade_request("/echo", "").as_bytes());
    assert!(missing.starts_with("HTTP/1.1 403"), "{missing}");
    let bad = raw_exchange(
        d.addr,
        upgrade_request("/echo", "Origin: https://evil.com\r\n").as_bytes(),
    );
    assert!(bad.starts_with("HTTP/1.1 403"), "{bad}");
    for good in ["https://example.com", "https://chat.example.org"] {
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(upgrade_request("/echo", &format!("Origin: {good}\r\n")).as_bytes())
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 101", "{good}");
    }
}

#[test]
fn oversize_message_is_closed_with_1009_and_others_carry_on() {
    let d = Daemon::start(&config("max_message_size = 1024", ECHO));
    let mut ws = connect(&d.url("/echo"));
    let mut other = connect(&d.url("/echo"));
    echo(&mut ws, Message::binary(vec![7u8; 1024]));
    ws.send(Message::binary(vec![7u8; 1025])).unwrap();
    assert_eq!(read_close_code(&mut ws), Some(1009));
    echo(&mut other, Message::text("fine"));
}

#[test]
fn idle_peer_that_ignores_pings_is_closed_but_one_that_answers_is_not() {
    let d = Daemon::start(&config("ping_interval = \"1s\"", ECHO));
    // A live client: tungstenite answers each ping while we read.
    let mut live = connect(&d.url("/echo"));
    let mut pings = 0;
    while pings < 3 {
        match live.read().unwrap() {
            Message::Ping(_) => pings += 1,
            other => panic!("a live client must not be closed: {other:?}"),
        }
    }
    // A raw client that never answers: pinged, then closed with 1001.
    let mut dead = std::net::TcpStream::connect(d.addr).unwrap();
    dead.set_read_timeout(Some(DEADLINE)).unwrap();
    dead.write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let mut all = Vec::new();
    let _ = dead.read_to_end(&mut all);
    let frames = parse_all(&all[head_end(&all).expect("a response head")..]);
    assert_eq!(frames[0].opcode, PING, "first a ping: {frames:?}");
    let close = frames.last().expect("then a close frame");
    assert_eq!(close.close_code(), Some(1001), "{frames:?}");
}

/// Resident memory (KiB) of the master's workers.
fn workers_rss_kib(d: &Daemon) -> u64 {
    d.workers()
        .iter()
        .filter_map(|w| std::fs::read_to_string(format!("/proc/{w}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// A masked binary frame of `len` bytes.
fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x82, 0xff];
    f.extend_from_slice(&(len as u64).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend(std::iter::repeat_n(0x55u8, len));
    f
}

#[test]
fn flooding_client_that_never_reads_is_throttled_and_others_stay_prompt() {
    let d = Daemon::start(&config("workers = 1\nmax_send_buffer = \"1MiB\"", ECHO));
    let mut normal = connect(&d.url("/echo"));
    echo(&mut normal, Message::text("warm up"));
    let rss_before = workers_rss_kib(&d);

    let mut flood = std::net::TcpStream::connect(d.addr).unwrap();
    flood
        .write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    flood.read_exact(&mut head).unwrap();
    // Write until the server stops reading us: the write blocks and times
    // out. Bounded: 512 MiB written would mean no throttling at all.
    flood
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let chunk = frame(64 * 1024);
    let mut written = 0usize;
    while written < (512 << 20) {
        match flood.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    assert!(written < (512 << 20), "the flood was never throttled");
    // The normal client on the same worker still gets its echoes.
    for i in 0..20 {
        echo(&mut normal, Message::text(format!("prompt {i}")));
    }
    let growth_mib = workers_rss_kib(&d).saturating_sub(rss_before) / 1024;
    assert!(
        growth_mib < 24,
        "worker memory grew by {growth_mib} MiB for one stalled client"
    );
}

#[test]
fn broadcast_to_a_stalled_reader_disconnects_it_and_not_the_others() {
    let routes = "[[routes]]\npath = \"/room/{r}\"\nhandler = \"broadcast\"\necho_self = false\n";
    let d = Daemon::start(&config("workers = 1\nmax_send_buffer = \"256KiB\"", routes));
    let mut sender = connect(&d.url("/room/x"));
    let mut reader = connect(&d.url("/room/x"));
    let stalled = std::net::TcpStream::connect(d.addr).unwrap();
    (&stalled)
        .write_all(upgrade_request("/room/x", "").as_bytes())
        .unwrap();
    let rss_before = workers_rss_kib(&d);
    let payload = vec![9u8; 64 * 1024];
    let mut got = 0;
    // 400 × 64 KiB = 25 MiB, far past what the stalled socket can hold.
    for i in 0..400u32 {
        let mut p = payload.clone();
        p[..4].copy_from_slice(&i.to_be_bytes());
        sender.send(Message::binary(p)).unwrap();
        if i % 8 == 7 {
            while got <= i {
                let m = reader.read().unwrap();
                assert_eq!(m.into_data()[..4], got.to_be_bytes());
                got += 1;
            }
        }
    }
    d.wait_log_contains("is not reading");
    let growth_mib = workers_rss_kib(&d).saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 24, "memory grew by {growth_mib} MiB");
}

#[test]
fn a_thousand_concurrent_clients_on_two_workers_echo() {
    let d = Daemon::start(&config("workers = 2", ECHO));
    assert_eq!(
        wsprobe(&["many", &d.url("/echo"), "1000"]).trim(),
        "ok 1000"
    );
}

/// The `Uid:` line (real, effective, saved, filesystem) of a process.
fn uid_line(pid: i32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(str::to_string)
}

#[test]
fn workers_run_as_the_configured_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: checking only that an unknown user is refused");
    } else {
        let d = Daemon::start(&config("user = \"nobody\"", ECHO));
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("a user nobody")
            .uid
            .to_string();
        // A worker shows up as the master's child right after fork, before
        // it drops privileges: wait for the switch, which must come.
        for w in d.wait_workers(2) {
            wait_for(&format!("worker {w} to run as nobody ({nobody})"), || {
                let uids = uid_line(w)?;
                uids.split_whitespace()
                    .skip(1)
                    .all(|u| u == nobody)
                    .then_some(())
            });
        }
        echo(&mut connect(&d.url("/echo")), Message::text("unprivileged"));
    }
    let dir = TempDir::new();
    let path = dir.write("w.toml", &config("user = \"no-such-user-here\"", ECHO));
    let mut cmd = std::process::Command::new(wssd_bin());
    cmd.arg("--config").arg(&path);
    let out = run(cmd, b"");
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("server.user"), "{}", out.stderr);
}
