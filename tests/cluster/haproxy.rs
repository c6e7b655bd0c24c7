//! The HAProxy configuration of docs/scaling.md, run for real: HAProxy on
//! a free loopback port in front of two wssd instances sharing rooms
//! through Redis; a room's clients land on both instances and each gets
//! every message once. The configuration is taken from the document, with
//! only its ports replaced, so the document cannot drift from what works.

use std::process::{Child, Command, Stdio};

use crate::redis::{client, config, free_port, next_text, Instance, Redis};
use crate::support::{self as common, wait_for};
use tungstenite::Message;

/// The ```haproxy block of docs/scaling.md.
fn documented_config() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scaling.md"))
        .expect("docs/scaling.md");
    let start = doc.find("```haproxy\n").expect("a ```haproxy block") + "```haproxy\n".len();
    let len = doc[start..].find("```").expect("end of the block");
    doc[start..start + len].to_string()
}

/// HAProxy in the foreground; killed and reaped on drop.
struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn haproxy_spreads_a_room_over_two_instances() {
    let redis = Redis::start(free_port());
    let a = Instance::start(&config(2, Some(&redis.url()), "a", None, ""));
    let b = Instance::start(&config(2, Some(&redis.url()), "b", None, ""));
    a.wait_cluster(true);
    b.wait_cluster(true);

    let front = free_port();
    let text = documented_config()
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:8081", &a.daemon.addr.to_string())
        .replace("127.0.0.1:8082", &b.daemon.addr.to_string())
        .replace("port 9101", &format!("port {}", a.status.port()))
        .replace("port 9102", &format!("port {}", b.status.port()));
    let cfg = a.daemon.dir.write("haproxy.cfg", &text);
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("haproxy must be installed (see .ci/run)");
    assert!(
        check.status.success(),
        "haproxy -c rejects the documented config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _haproxy = HaProxy(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy"),
    );
    let url = format!("ws://127.0.0.1:{front}/chat/lobby");
    wait_for("haproxy to accept a WebSocket", || {
        common::try_connect(&url).ok()
    });
    // The probe connection above closed; count from a clean state.
    wait_for("probe closed", || {
        let open = |i: &Instance| i.status()["totals"]["connections"].as_u64();
        (open(&a) == Some(0) && open(&b) == Some(0)).then_some(())
    });

    let mut clients: Vec<_> = (0..6).map(|_| client(&url)).collect();
    let (on_a, on_b) = wait_for("6 connections over both instances", || {
        let open = |i: &Instance| i.status()["totals"]["connections"].as_u64();
        match (open(&a), open(&b)) {
            (Some(x), Some(y)) if x + y == 6 => Some((x, y)),
            _ => None,
        }
    });
    assert!(on_a > 0 && on_b > 0, "not spread: {on_a} on a, {on_b} on b");

    for (n, ws) in clients.iter_mut().enumerate().take(2) {
        ws.send(Message::text(format!("from-{n}"))).expect("send");
    }
    for ws in &mut clients {
        let mut got = vec![next_text(ws), next_text(ws)];
        got.sort();
        assert_eq!(got, ["from-0", "from-1"]);
    }
}
