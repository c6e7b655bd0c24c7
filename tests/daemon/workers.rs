//! The process model: N workers as children of the master, and a worker
//! killed with SIGKILL is replaced while the others' clients carry on.

use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tungstenite::Message;

#[test]
fn three_workers_are_children_of_the_master() {
    let d = Daemon::start(&config("workers = 3", ECHO));
    let workers = d.wait_workers(3);
    for w in &workers {
        assert!(alive(*w));
        d.wait_log_contains(&format!("pid {w} started"));
    }
}

#[test]
fn killed_worker_is_replaced_and_others_keep_serving() {
    // Two connections per worker: the limit forces an even spread.
    let d = Daemon::start(&config("max_connections_per_worker = 2", ECHO));
    let workers = d.wait_workers(2);
    let mut clients: Vec<_> = (0..4).map(|_| connect(&d.url("/echo"))).collect();
    for c in &mut clients {
        echo(c, Message::text("before"));
    }
    let victim = workers[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    d.wait_log_contains(&format!("pid {victim} exited: killed by SIGKILL"));
    let replaced = wait_for("a replacement worker", || {
        let now = d.workers();
        (now.len() == 2 && !now.contains(&victim)).then_some(now)
    });
    assert!(
        replaced.contains(&workers[1]),
        "the other worker must be untouched"
    );

    let mut survivors = 0;
    for c in &mut clients {
        if c.send(Message::text("after")).is_ok() {
            if let Ok(m) = c.read() {
                assert_eq!(m, Message::text("after"));
                survivors += 1;
            }
        }
    }
    assert_eq!(
        survivors, 2,
        "the two clients of the surviving worker keep echoing"
    );
    // And the replacement serves new clients (it has two free slots).
    let mut fresh: Vec<_> = (0..2).map(|_| connect(&d.url("/echo"))).collect();
    for c in &mut fresh {
        echo(c, Message::text("new"));
    }
}

/// The pid of the worker serving `ws` (examples/inspect answers `info`
/// with `id=PID-SEQ pid=PID ...`).
fn served_by(ws: &mut Ws) -> i32 {
    ws.send(Message::text("info")).unwrap();
    let info = text(ws.read().unwrap());
    info.split(' ')
        .find_map(|kv| kv.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {info:?}"))
}

#[test]
fn full_worker_lets_siblings_take_connections() {
    // 3 workers × 2 slots: six clients must land two on each worker. They
    // connect in a burst, all queued before the handshakes, so that a
    // worker without the limit would accept several of them at once.
    let d = Daemon::start_example(
        "inspect",
        &config("workers = 3\nmax_connections_per_worker = 2", ""),
    );
    let workers = d.wait_workers(3);
    let url = d.url("/inspect/cap");
    let tcp: Vec<_> = (0..6)
        .map(|_| std::net::TcpStream::connect(d.addr).expect("connect"))
        .collect();
    let mut clients: Vec<Ws> = tcp
        .into_iter()
        .map(|t| {
            t.set_read_timeout(Some(DEADLINE)).unwrap();
            tungstenite::client(url.as_str(), t).expect("handshake").0
        })
        .collect();
    let pids: Vec<i32> = clients.iter_mut().map(served_by).collect();
    for w in &workers {
        let n = pids.iter().filter(|p| *p == w).count();
        assert_eq!(n, 2, "worker {w} serves {n} clients: {pids:?}");
    }
    // A seventh waits (in the listen backlog) until a slot frees, and the
    // only free slot is then on the worker of the client that left.
    let seventh = std::thread::spawn(move || {
        let mut ws = connect(&url);
        let pid = served_by(&mut ws);
        (ws, pid)
    });
    drop(clients.remove(0));
    let (mut ws, pid) = seventh.join().expect("the seventh client");
    assert_eq!(pid, pids[0], "the freed slot is the only one: {pids:?}");
    echo(&mut ws, Message::text("served"));
    d.wait_log_contains("at max_connections_per_worker");
}

#[test]
fn a_worker_that_keeps_dying_is_restarted_with_back_off() {
    let d = Daemon::start_example_env(
        "inspect",
        &config("workers = 1", ""),
        &[("INSPECT_PANIC_ON_START", "1")],
    );
    for delay in ["100 ms", "200 ms", "400 ms", "800 ms"] {
        d.wait_log_contains(&format!("restarting it in {delay}"));
    }
    assert!(
        d.log_count("restarting it in 0 ms") == 0,
        "quick deaths must back off"
    );
}
