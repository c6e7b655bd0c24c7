//! SIGTERM: every client gets close code 1001, the master exits 0, no
//! worker is left and the pid file is gone.

use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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
    // A wedged worker (stopped, so it cannot drain or exit) keeps the
    // drain waiting until drain_timeout (600 s) plus the master's slack:
    // only the second SIGTERM can end it within the test's deadline. (A
    // client that does not answer the close would not do: the worker drops
    // it after its 5 s close grace and exits by itself.)
    let wedged = workers[0];
    kill(Pid::from_raw(wedged), Signal::SIGSTOP).unwrap();
    wait_for("the worker to stop", || stopped(wedged).then_some(()));
    d.signal(Signal::SIGTERM);
    d.wait_log_contains("send it again to stop at once");
    d.signal(Signal::SIGTERM);
    d.wait_log_contains("again: stopping at once");
    d.wait_exit();
    d.wait_log_contains(&format!("pid {wedged} exited: killed by SIGKILL"));
    for w in workers {
        assert!(!alive(w), "worker {w} outlived the master");
    }
}

/// Whether the process is stopped (state T in /proc/PID/stat).
fn stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('T'))
    })
}
