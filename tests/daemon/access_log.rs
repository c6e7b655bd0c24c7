//! The access log: one `info` line per handshake, accepted (101, with the
//! connection id) or refused (404, 400, 429, ...), with the client's
//! plain address, the method, the path without its query, the status and
//! the reason; as JSON keys with `format = "json"`; none with
//! `access_log = false`.

use crate::support::*;

use std::process::{Command, Stdio};

use tungstenite::Message;

/// Every line of `path` as JSON.
fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The access lines (target `wssd::access`) among `lines`.
fn access(lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|v| v["target"] == "wssd::access")
        .cloned()
        .collect()
}

#[test]
fn json_access_lines_for_refused_and_accepted_handshakes_in_the_log_file() {
    let dir = TempDir::new();
    let log = dir.path().join("wssd.log");
    let text = config("", ECHO).replace(
        "level = \"debug\"",
        "level = \"info\"\nfile = \"wssd.log\"\nformat = \"json\"",
    ) + "\n[limits]\nmax_connections_per_ip = 1\n";
    let path = dir.write("wssd.toml", &text);
    let mut cmd = Command::new(wssd_bin());
    cmd.arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let _master = ChildGuard::spawn(&mut cmd, "wssd");
    let addr: std::net::SocketAddr = wait_for("the listening address in the log file", || {
        json_lines(&log).iter().find_map(|v| {
            v["message"]
                .as_str()?
                .split("listening on ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    });

    // Accepted: the client's own address and port, the path without the
    // query (which may carry a token), 101 and the connection id.
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let client = tcp.local_addr().unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/echo?token=s3cret"), tcp).expect("handshake");
    echo(&mut ws, Message::text("logged"));
    let opened = wait_for("the 101 line", || {
        access(&json_lines(&log))
            .into_iter()
            .find(|v| v["status"] == 101)
    });
    assert_eq!(opened["peer"], client.to_string(), "{opened}");
    assert_eq!(opened["method"], "GET", "{opened}");
    assert_eq!(opened["path"], "/echo", "{opened}");
    assert_eq!(opened["reason"], "open", "{opened}");
    assert_eq!(opened["level"], "INFO", "{opened}");
    let conn = opened["conn"]
        .as_str()
        .expect("a connection id")
        .to_string();
    let worker_pid = conn.split('-').next().unwrap();
    assert_eq!(opened["pid"].to_string(), worker_pid, "{opened}");

    // Refused by the per-address limit (429: 127.0.0.1 holds its one
    // connection), by routing (404) and by the method (405).
    let reply = raw_exchange(addr, upgrade_request("/echo", "").as_bytes());
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    let reply = raw_exchange(addr, upgrade_request("/nowhere?x=1", "").as_bytes());
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    let reply = raw_exchange(addr, b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    drop(ws);
    let lines = wait_for("the refusals' lines", || {
        let lines = access(&json_lines(&log));
        [404, 405, 429]
            .iter()
            .all(|s| lines.iter().any(|v| v["status"] == *s))
            .then_some(lines)
    });
    let by = |status: u16| lines.iter().find(|v| v["status"] == status).unwrap();
    let not_found = by(404);
    assert_eq!(not_found["path"], "/nowhere", "{not_found}");
    assert_eq!(not_found["method"], "GET", "{not_found}");
    assert!(not_found["conn"].is_null(), "{not_found}");
    assert!(
        not_found["reason"].as_str().unwrap().contains("no route"),
        "{not_found}"
    );
    let peer = not_found["peer"].as_str().unwrap();
    assert!(
        peer.starts_with("127.0.0.1:") && peer[10..].parse::<u16>().is_ok(),
        "{not_found}"
    );
    let limited = by(429);
    assert!(
        limited["reason"]
            .as_str()
            .unwrap()
            .contains("already has 1 connections open"),
        "{limited}"
    );
    let method = by(405);
    assert_eq!(method["method"], "POST", "{method}");
    assert_eq!(method["path"], "/echo", "{method}");
    // One line per handshake; nothing says Some(...), nothing shows the query.
    for status in [101, 404, 405, 429] {
        let n = lines.iter().filter(|v| v["status"] == status).count();
        assert_eq!(n, 1, "{status}: {lines:#?}");
    }
    let all = std::fs::read_to_string(&log).unwrap();
    assert!(!all.contains("Some("), "{all}");
    assert!(!all.contains("s3cret"), "{all}");
}

#[test]
fn text_access_lines_and_the_switch() {
    let d = Daemon::start(&config("", ECHO));
    let tcp = std::net::TcpStream::connect(d.addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let client = tcp.local_addr().unwrap();
    let (mut ws, _) = tungstenite::client(d.url("/echo"), tcp).expect("handshake");
    echo(&mut ws, Message::text("hi"));
    let opened = d.wait_log_contains(&format!("{client} \"GET /echo\" 101 conn="));
    assert!(opened.contains(" INFO "), "{opened}");
    assert!(opened.ends_with(" \"open\""), "{opened}");
    raw_exchange(d.addr, upgrade_request("/nowhere", "").as_bytes());
    let refused = d.wait_log_contains("\"GET /nowhere\" 404 conn=- \"no route serves /nowhere\"");
    assert!(refused.contains(" INFO "), "{refused}");
    assert!(refused.contains(": 127.0.0.1:"), "{refused}");

    // access_log = false, applied by a reload: no more lines once the
    // old generation stopped accepting.
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    d.rewrite_config(&text.replace("[log]\n", "[log]\naccess_log = false\n"));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("both old workers retiring", || {
        (d.log_count("retiring") >= 2).then_some(())
    });
    echo(&mut connect(&d.url("/echo")), Message::text("not logged"));
    raw_exchange(d.addr, upgrade_request("/silent", "").as_bytes());
    drop(ws);
    let mut d = d;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(), Some(0));
    assert_eq!(d.log_count("\"GET /silent\""), 0);
    assert_eq!(d.log_count("\"GET /echo\" 101"), 1);
}
