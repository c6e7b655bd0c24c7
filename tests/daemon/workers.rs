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

#[test]
fn full_worker_lets_siblings_take_connections() {
    let d = Daemon::start(&config("max_connections_per_worker = 1", ECHO));
    d.wait_workers(2);
    let mut a = connect(&d.url("/echo"));
    let mut b = connect(&d.url("/echo"));
    echo(&mut a, Message::text("a"));
    echo(&mut b, Message::text("b"));
    d.wait_log_contains("at max_connections_per_worker");
    drop(a);
    // A freed slot is taken again.
    let mut c = connect(&d.url("/echo"));
    echo(&mut c, Message::text("c"));
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
