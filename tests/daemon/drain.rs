//! SIGTERM: every client gets close code 1001, the master exits 0, no
//! worker is left and the pid file is gone.

use crate::support::*;
use nix::sys::signal::Signal;
use tungstenite::Message;

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    let dir = TempDir::new();
    let pid_file = dir.path().join("wssd.pid");
    let text = config(&format!("pid_file = \"{}\"", pid_file.display()), ECHO);
    let path = dir.write("wssd.toml", &text);
    let mut d = Daemon::start_in(dir, path);
    let pid_text = wait_for("the pid file", || std::fs::read_to_string(&pid_file).ok());
    assert_eq!(pid_text.trim(), d.pid().to_string());
    let workers = d.wait_workers(2);

    let mut ours: Vec<_> = (0..3).map(|_| connect(&d.url("/echo"))).collect();
    for c in &mut ours {
        echo(c, Message::text("hi"));
    }
    let py = PyProc::wsprobe(&["hold", &d.url("/echo")]);
    assert_eq!(py.line(), "open");

    d.signal(Signal::SIGTERM);
    for c in &mut ours {
        assert_eq!(read_close_code(c), Some(1001));
    }
    assert_eq!(py.line(), "closed 1001");
    assert_eq!(d.wait_exit(), Some(0));
    for w in workers {
        assert!(!alive(w), "worker {w} outlived the master");
    }
    assert!(!pid_file.exists(), "pid file must be removed");
}

#[test]
fn second_sigterm_stops_at_once() {
    let mut d =
        Daemon::start(&config("", ECHO).replace("drain_timeout = 10", "drain_timeout = 600"));
    let workers = d.wait_workers(2);
    // A client that never answers the close keeps the drain waiting.
    let stalled = std::net::TcpStream::connect(d.addr).unwrap();
    use std::io::Write;
    (&stalled)
        .write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    d.signal(Signal::SIGTERM);
    d.wait_log_contains("draining");
    d.signal(Signal::SIGTERM);
    d.wait_exit();
    for w in workers {
        assert!(!alive(w));
    }
}
