//! Broadcast across workers with the built-in `broadcast` handler: a room's
//! twelve clients spread over three workers hear each message once, in
//! order; other rooms hear nothing; `echo_self` decides the sender's copy;
//! a worker's room index stays right as members leave and join.

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

/// Closes `ws` with the close handshake and waits for the server's answer:
/// by then the server has taken the connection out of its rooms.
fn leave(mut ws: Ws) {
    ws.close(None).expect("send close");
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("expected the server's close answer, got {e}"),
        }
    }
}

/// Reads `n` texts from `ws` and returns them sorted.
fn hear(ws: &mut Ws, n: usize, who: &str) -> Vec<String> {
    let mut got: Vec<String> = (0..n)
        .map(|i| match ws.read() {
            Ok(m) => text(m),
            Err(e) => panic!("{who}: message {} of {n} did not arrive: {e}", i + 1),
        })
        .collect();
    got.sort();
    got
}

/// A worker's room index moves its last member into a leaver's place.
/// Members leave from the middle, then the one that was moved, then the
/// first; newcomers take the freed slots: every message still reaches
/// each member of its room exactly once and no one else.
#[test]
fn a_room_keeps_exactly_its_members_through_leaves_and_joins() {
    // One worker: every member is in the same worker's index.
    let d = Daemon::start(&config("workers = 1", ROUTES));
    d.wait_workers(1);
    let (room_url, other_url) = (d.url("/chat/moves"), d.url("/chat/other"));
    // Interleaved, so that the everyone and route sets move too.
    let mut room = Vec::new();
    let mut other = Vec::new();
    for i in 0..8 {
        room.push(Some(connect(&room_url)));
        if i % 3 == 0 {
            other.push(connect(&other_url));
        }
    }
    // 2 from the middle (7 takes its place), then 7 (the moved one), then 0.
    for i in [2, 7, 0] {
        leave(room[i].take().expect("still open"));
    }
    leave(other.remove(1));
    for _ in 0..2 {
        room.push(Some(connect(&room_url)));
    }
    other.push(connect(&other_url));
    let mut members: Vec<Ws> = room.into_iter().flatten().collect();
    assert_eq!((members.len(), other.len()), (7, 3));

    for (i, m) in members.iter_mut().enumerate() {
        m.send(Message::text(format!("moves {i}"))).expect("send");
    }
    for (j, o) in other.iter_mut().enumerate() {
        o.send(Message::text(format!("other {j}"))).expect("send");
    }
    let mut expect: Vec<String> = (0..members.len()).map(|i| format!("moves {i}")).collect();
    expect.sort();
    for (i, m) in members.iter_mut().enumerate() {
        assert_eq!(
            hear(m, expect.len(), &format!("member {i}")),
            expect,
            "member {i}"
        );
    }
    let expect: Vec<String> = (0..other.len()).map(|j| format!("other {j}")).collect();
    for (j, o) in other.iter_mut().enumerate() {
        assert_eq!(
            hear(o, expect.len(), &format!("other {j}")),
            expect,
            "other {j}"
        );
    }
    // Nothing more for anyone: a marker is the next thing each hears.
    members[0].send(Message::text("marker")).expect("send");
    for (i, m) in members.iter_mut().enumerate() {
        assert_eq!(hear(m, 1, &format!("member {i}")), ["marker"], "member {i}");
    }
    other[0].send(Message::text("other marker")).expect("send");
    for (j, o) in other.iter_mut().enumerate() {
        assert_eq!(
            hear(o, 1, &format!("other {j}")),
            ["other marker"],
            "other {j}"
        );
    }
}
