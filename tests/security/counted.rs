//! Refused handshakes are counted in the daemon's figures whoever refused
//! them: the per-address limits (429) and an `exec` route at
//! `max_processes` (503) show up in `/status` and `/metrics` of the
//! status listener, like wssd's own 404s.

use crate::support::*;

use std::net::SocketAddr;

use tungstenite::Message;

/// `/status`'s refusals with `status`, summed over the workers, and the
/// same in its totals.
fn status_count(status: SocketAddr, code: &str) -> (u64, u64) {
    let doc: serde_json::Value =
        serde_json::from_str(&status_get(status, "/status")).expect("JSON");
    let workers: u64 = doc["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["handshake_failures"][code].as_u64())
        .sum();
    let totals = doc["totals"]["handshake_failures"][code]
        .as_u64()
        .unwrap_or(0);
    (workers, totals)
}

/// `/metrics`: the sum of `wssd_handshake_failures_total` with `status`.
fn metrics_count(status: SocketAddr, code: &str) -> f64 {
    let label = format!("status=\"{code}\"");
    status_get(status, "/metrics")
        .lines()
        .filter(|l| l.starts_with("wssd_handshake_failures_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn refusals_by_the_limits_and_max_processes_are_counted() {
    let routes = format!(
        "{ECHO}[[routes]]\npath = \"/one\"\nhandler = \"exec\"\ncommand = [\"cat\"]\nmax_processes = 1\n\n[limits]\nmax_connections_per_ip = 1\nexempt = [\"127.0.0.1/32\"]\n\n[status]\nlisten = \"127.0.0.1:0\"\n"
    );
    let d = Daemon::start(&config("workers = 1", &routes));
    let status = d.status_addr();

    // 127.0.0.2 holds its one connection; its second gets 429.
    let held = PyProc::spawn(
        "support/wsadmit.py",
        &["hold", &d.url("/echo"), "2", "--from", "127.0.0.2"],
    );
    assert!(held.line().starts_with("open "));
    let second = held.line();
    assert!(second.starts_with("status 429 "), "{second}");
    assert_eq!(held.line(), "done");
    wait_for("the 429 in /status", || {
        (status_count(status, "429") == (1, 1)).then_some(())
    });
    assert_eq!(metrics_count(status, "429"), 1.0);

    // The exec route runs its one program; the next client gets 503.
    let mut first = connect(&d.url("/one"));
    echo(&mut first, Message::text("running"));
    let reply = raw_exchange(d.addr, upgrade_request("/one", "").as_bytes());
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    wait_for("the 503 in /status", || {
        (status_count(status, "503") == (1, 1)).then_some(())
    });
    assert_eq!(metrics_count(status, "503"), 1.0);
    // Nothing else was refused.
    assert_eq!(status_count(status, "other"), (0, 0));
    assert_eq!(status_count(status, "429"), (1, 1));
}
