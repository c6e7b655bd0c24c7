//! Echo over the real daemon: our client and Python `websockets`, text,
//! binary and a 1 MB message; HTTP refusals before the upgrade.

use std::io::Write;

use crate::support::frames::FrameStream;
use crate::support::*;
use tungstenite::Message;

#[test]
fn echoes_text_binary_and_large_messages() {
    let d = Daemon::start(&config("", ECHO));
    let mut ws = connect(&d.url("/echo"));
    echo(&mut ws, Message::text("héllo wörld ✓"));
    echo(&mut ws, Message::binary(vec![0u8, 1, 2, 255]));
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    echo(&mut ws, Message::binary(big));
    let big_text = "ü".repeat(600_000);
    echo(&mut ws, Message::text(big_text));
    ws.close(None).unwrap();
}

#[test]
fn python_websockets_client_echoes() {
    let d = Daemon::start(&config("", ECHO));
    assert_eq!(wsprobe(&["echo", &d.url("/echo")]).trim(), "ok");
}

#[test]
fn answers_pings() {
    let d = Daemon::start(&config("", ECHO));
    let mut ws = connect(&d.url("/echo"));
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[test]
fn unknown_path_is_404_and_daemon_keeps_serving() {
    let d = Daemon::start(&config("", ECHO));
    let reply = raw_exchange(d.addr, upgrade_request("/nope", "").as_bytes());
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert_eq!(wsprobe(&["status", &d.url("/nope")]).trim(), "status 404");
    echo(&mut connect(&d.url("/echo")), Message::text("still here"));
}

#[test]
fn garbage_is_400_and_daemon_keeps_serving() {
    let d = Daemon::start(&config("", ECHO));
    let reply = raw_exchange(d.addr, b"\x16\x03\x01\x00\xa5 this is not http\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = raw_exchange(d.addr, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "plain GET: {reply}");
    let reply = raw_exchange(d.addr, b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 405"), "POST: {reply}");
    echo(&mut connect(&d.url("/echo")), Message::text("still here"));
}

#[test]
fn wrong_version_is_426() {
    let d = Daemon::start(&config("", ECHO));
    let req = upgrade_request("/echo", "").replace("Version: 13", "Version: 8");
    let reply = raw_exchange(d.addr, req.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 426"), "{reply}");
    assert!(reply.contains("Sec-WebSocket-Version: 13"), "{reply}");
}

#[test]
fn oversized_request_head_is_431() {
    let d = Daemon::start(&config("max_request_head = 2048", ECHO));
    let req = upgrade_request("/echo", &format!("X-Big: {}\r\n", "a".repeat(4000)));
    let reply = raw_exchange(d.addr, req.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    echo(&mut connect(&d.url("/echo")), Message::text("still here"));
}

/// Sends `request` to the one worker in pieces of `size` bytes, each
/// read by the worker before the next is sent (a second client's echo
/// is answered only after the worker handled the events before it),
/// and returns what the server answers.
fn send_head_in_pieces(d: &Daemon, request: &[u8], size: usize) -> String {
    let mut witness = connect(&d.url("/echo"));
    let mut slow = FrameStream::new(std::net::TcpStream::connect(d.addr).expect("connect"));
    for piece in request.chunks(size) {
        if slow.tcp.write_all(piece).is_err() {
            break; // refused before the end of the head
        }
        echo(&mut witness, Message::text("step"));
    }
    slow.read_head()
}

#[test]
fn a_head_read_in_many_steps_is_answered() {
    let d = Daemon::start(&config("workers = 1\nmax_request_head = 2048", ECHO));
    let req = upgrade_request("/echo", &format!("X-Pad: {}\r\n", "p".repeat(900)));
    let reply = send_head_in_pieces(&d, req.as_bytes(), 7);
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    // Over the limit in steps: refused as one head would be.
    let req = upgrade_request("/echo", &format!("X-Big: {}\r\n", "a".repeat(4000)));
    let reply = send_head_in_pieces(&d, req.as_bytes(), 300);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
}

#[test]
fn frames_sent_with_the_request_are_not_lost() {
    // A client may pipeline its first frame right behind the request head.
    let d = Daemon::start(&config("", ECHO));
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    bytes.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
    let reply = raw_exchange(d.addr, &bytes);
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    assert!(
        reply.contains("\u{81}\u{2}hi") || reply.contains("\x02hi"),
        "{reply:?}"
    );
}

/// The built-in echo answers while reading and counts its messages once
/// per read: every message is in `/status` once in and once out, with
/// its bytes (a ping is not a message).
#[test]
fn echoed_messages_are_counted_in_and_out() {
    let text = config("workers = 1\n", ECHO) + "\n[status]\nlisten = \"127.0.0.1:0\"\n";
    let d = Daemon::start(&text);
    let status: std::net::SocketAddr = d.wait_log("the status listener", |l| {
        l.split("status listener on ")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
    });
    let mut ws = connect(&d.url("/echo"));
    echo(&mut ws, Message::text("hello"));
    echo(&mut ws, Message::binary(vec![1u8, 2, 3, 4]));
    // Several reads, assembled before it is echoed.
    echo(&mut ws, Message::binary(vec![7u8; 70_000]));
    ws.send(Message::Ping(b"not counted".to_vec().into()))
        .unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Pong(_)));
    // Counted right after the read that echoed them: wait for the count.
    let totals = wait_for("3 messages counted in and out", || {
        let (code, body) = http(status, "GET", "/status", &[], "");
        assert_eq!(code, 200, "GET /status: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
        let totals = v["totals"].clone();
        (totals["messages_out"] == 3).then_some(totals)
    });
    assert_eq!(totals["messages_in"], 3, "{totals}");
    assert_eq!(totals["bytes_in"], 70_009, "{totals}");
    assert_eq!(totals["bytes_out"], 70_009, "{totals}");
}
