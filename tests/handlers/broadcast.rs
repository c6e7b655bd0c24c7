//! Broadcast across workers with the built-in `broadcast` handler: a room's
//! twelve clients spread over three workers hear each message once, in
//! order; other rooms hear nothing; `echo_self` decides the sender's copy.

use crate::support::*;
use tungstenite::Message;

const ROUTES: &str = "[[routes]]\npath = \"/chat/{room}\"\nhandler = \"broadcast\"\n\n\
[[routes]]\npath = \"/quiet/{room}\"\nhandler = \"broadcast\"\necho_self = false\n";

fn daemon() -> Daemon {
    // 3 workers × 5 slots = 15: twelve room members plus one or two
    // others must land on every worker (at least 2 members each).
    let text = config("workers = 3\nmax_connections_per_worker = 5", ROUTES);
    let d = Daemon::start(&text);
    d.wait_workers(3);
    d
}

#[test]
fn room_messages_reach_every_member_once_in_order_across_workers() {
    let d = daemon();
    let mut other_room = connect(&d.url("/chat/elsewhere"));
    let mut members: Vec<_> = (0..12).map(|_| connect(&d.url("/chat/lobby"))).collect();
    for i in 0..20 {
        members[0].send(Message::text(format!("msg {i}"))).unwrap();
    }
    // echo_self = true: the sender gets its own copies too, in order.
    for (n, m) in members.iter_mut().enumerate() {
        for i in 0..20 {
            assert_eq!(text(m.read().unwrap()), format!("msg {i}"), "member {n}");
        }
    }
    // Every worker has processed the twenty relay frames (each has members
    // that received them); a marker said in the other room now must be the
    // first thing that room hears.
    other_room.send(Message::text("marker")).unwrap();
    assert_eq!(text(other_room.read().unwrap()), "marker");
}

#[test]
fn echo_self_false_skips_only_the_sender() {
    let d = daemon();
    let mut members: Vec<_> = (0..12).map(|_| connect(&d.url("/quiet/room1"))).collect();
    for i in 0..20 {
        members[0].send(Message::text(format!("q {i}"))).unwrap();
    }
    for m in members.iter_mut().skip(1) {
        for i in 0..20 {
            assert_eq!(text(m.read().unwrap()), format!("q {i}"));
        }
    }
    members[1].send(Message::text("done")).unwrap();
    // Own copies would have been delivered locally before anything else.
    assert_eq!(text(members[0].read().unwrap()), "done");
}

#[test]
fn python_clients_in_one_room_hear_each_other() {
    let d = daemon();
    let mut ours = connect(&d.url("/chat/py"));
    let py = PyProc::wsprobe(&["hold", &d.url("/chat/py")]);
    assert_eq!(py.line(), "open");
    ours.send(Message::text("to python")).unwrap();
    assert_eq!(text(ours.read().unwrap()), "to python");
    assert_eq!(py.line(), "message to python");
    drop(py); // killed: the room must keep working for the others
    let mut again = connect(&d.url("/chat/py"));
    ours.send(Message::text("still here")).unwrap();
    // `again` may join its worker's room before the relayed "to python"
    // reaches that worker: then it hears that one first.
    let mut first = text(again.read().unwrap());
    if first == "to python" {
        first = text(again.read().unwrap());
    }
    assert_eq!(first, "still here");
}
