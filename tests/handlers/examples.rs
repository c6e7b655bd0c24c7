//! The handler API through a real embedding program (examples/inspect.rs):
//! path parameters and query, failure isolation, broadcast scopes across
//! workers, and broadcast_many without blocking the worker.

use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tungstenite::Message;

/// Sends `info` and parses the `key=value` reply.
fn info(ws: &mut Ws) -> std::collections::HashMap<String, String> {
    ws.send(Message::text("info")).unwrap();
    text(ws.read().unwrap())
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn inspect(server: &str) -> Daemon {
    Daemon::start_example("inspect", &config(server, ""))
}

#[test]
fn path_parameters_and_query_reach_the_handler_decoded_once() {
    let d = inspect("");
    let mut ws = connect(&d.url("/notifications/caf%C3%A9/a%2520b/tok?x=1&y=%20z"));
    let i = info(&mut ws);
    assert_eq!(i["route"], "/notifications/{entity}/{context}/{token}");
    assert_eq!(i["path"], "/notifications/caf%C3%A9/a%2520b/tok");
    assert_eq!(i["params"], "entity:café,context:a%20b,token:tok");
    assert_eq!(i["query"], "x=1&y=%20z");
    assert_eq!(i["header:host"], d.addr.to_string());
    let mut rest = connect(&d.url("/inspect/a/b/c"));
    assert_eq!(info(&mut rest)["params"], "rest:a/b/c");
}

#[test]
fn handlers_see_the_request_headers_but_not_those_of_the_upgrade() {
    use tungstenite::client::IntoClientRequest;
    let d = inspect("");
    let mut req = d.url("/inspect/h").into_client_request().unwrap();
    let headers = req.headers_mut();
    headers.insert("X-Custom", "one".parse().unwrap());
    // Offered, not negotiated (the route's compression is off), and not
    // kept either way: `compressed()` says what was negotiated.
    headers.insert(
        "Sec-WebSocket-Extensions",
        "permessage-deflate".parse().unwrap(),
    );
    let tcp = std::net::TcpStream::connect(d.addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let (mut ws, _) = tungstenite::client(req, tcp).expect("handshake");
    let i = info(&mut ws);
    assert_eq!(i["header:x-custom"], "one");
    assert_eq!(i["header:host"], d.addr.to_string());
    for h in [
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    ] {
        assert!(!i.contains_key(&format!("header:{h}")), "{h} kept: {i:?}");
    }
}

#[test]
fn connection_ids_are_unique_and_name_the_worker() {
    let d = inspect("max_connections_per_worker = 3");
    let workers = d.wait_workers(2);
    let mut clients: Vec<_> = (0..6).map(|_| connect(&d.url("/inspect/x"))).collect();
    let infos: Vec<_> = clients.iter_mut().map(info).collect();
    let ids: std::collections::HashSet<_> = infos.iter().map(|i| i["id"].clone()).collect();
    assert_eq!(ids.len(), 6);
    for i in &infos {
        let pid: i32 = i["pid"].parse().unwrap();
        assert!(workers.contains(&pid));
        assert!(i["id"].starts_with(&format!("{pid}-")), "{}", i["id"]);
    }
}

#[test]
fn handler_panic_closes_only_its_connection_with_1011() {
    let d = inspect("workers = 1");
    let mut victim = connect(&d.url("/inspect/p"));
    let mut other = connect(&d.url("/inspect/p"));
    let pid_before = info(&mut other)["pid"].clone();
    victim.send(Message::text("panic")).unwrap();
    assert_eq!(read_close_code(&mut victim), Some(1011));
    d.wait_log_contains("handler panicked");
    echo(&mut other, Message::text("unaffected"));
    assert_eq!(
        info(&mut other)["pid"],
        pid_before,
        "the worker must not restart"
    );
    // An error returned by a handler is logged; the connection stays.
    other.send(Message::text("fail")).unwrap();
    d.wait_log_contains("inspect was asked to fail");
    echo(&mut other, Message::text("still open"));
}

#[test]
fn broadcast_all_reaches_every_worker_and_survives_a_killed_worker() {
    let d = inspect("workers = 3\nmax_connections_per_worker = 2");
    let workers = d.wait_workers(3);
    let mut clients: Vec<_> = (0..6).map(|_| connect(&d.url("/inspect/any"))).collect();
    let pids: Vec<i32> = clients
        .iter_mut()
        .map(|c| info(c)["pid"].parse().unwrap())
        .collect();
    for w in &workers {
        assert_eq!(pids.iter().filter(|p| *p == w).count(), 2);
    }
    // The sender is on worker A; kill worker B half-way through.
    let sender_pid = pids[0];
    let victim = *workers.iter().find(|w| **w != sender_pid).unwrap();
    for i in 0..40 {
        if i == 20 {
            kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
        }
        clients[0].send(Message::text(format!("all m{i}"))).unwrap();
    }
    for (n, c) in clients.iter_mut().enumerate() {
        if pids[n] == victim {
            continue;
        }
        for i in 0..40 {
            assert_eq!(text(c.read().unwrap()), format!("m{i}"), "client {n}");
        }
    }
}

#[test]
fn broadcast_scopes_route_and_room() {
    let d = inspect("workers = 2\nmax_connections_per_worker = 3");
    let mut a1 = connect(&d.url("/room/a"));
    let mut a2 = connect(&d.url("/room/a"));
    let mut b = connect(&d.url("/room/b"));
    let mut other_route = connect(&d.url("/inspect/z"));
    a1.send(Message::text("room only-a")).unwrap();
    assert_eq!(text(a2.read().unwrap()), "only-a");
    a1.send(Message::text("route all-rooms")).unwrap();
    assert_eq!(text(a2.read().unwrap()), "all-rooms");
    assert_eq!(
        text(b.read().unwrap()),
        "all-rooms",
        "room b hears the route broadcast, not the room one"
    );
    other_route.send(Message::text("marker")).unwrap();
    assert_eq!(
        text(other_route.read().unwrap()),
        "marker",
        "another route hears neither"
    );
}

#[test]
fn broadcast_many_does_not_block_the_worker() {
    let d = inspect("workers = 1");
    let mut listener = connect(&d.url("/room/slow"));
    let mut sender = connect(&d.url("/room/slow"));
    // Spaced messages arrive, in order, to everyone in the room.
    sender.send(Message::text("many 3 100 tick")).unwrap();
    for i in 1..=3 {
        assert_eq!(text(listener.read().unwrap()), format!("tick {i}"));
        assert_eq!(text(sender.read().unwrap()), format!("tick {i}"));
    }
    // The first of two messages an hour apart goes at once; the second is
    // pending for the rest of the test. The same (only) worker answers
    // meanwhile: a worker that slept between them would not.
    sender.send(Message::text("many 2 3600000 slow")).unwrap();
    assert_eq!(text(listener.read().unwrap()), "slow 1");
    assert_eq!(text(sender.read().unwrap()), "slow 1");
    sender.send(Message::text("echo-me")).unwrap();
    assert_eq!(text(sender.read().unwrap()), "echo-me");
    echo(&mut listener, Message::text("listener too"));
}

#[test]
fn chat_example_joins_talks_and_leaves() {
    let d = Daemon::start_example("chat", &config("workers = 1", ""));
    let mut alice = connect(&d.url("/chat/lobby?name=alice"));
    assert_eq!(text(alice.read().unwrap()), "* welcome to lobby, alice");
    let mut bob = connect(&d.url("/chat/lobby?name=bob"));
    assert_eq!(text(bob.read().unwrap()), "* welcome to lobby, bob");
    assert_eq!(text(alice.read().unwrap()), "* bob joined lobby");
    bob.send(Message::text("/who")).unwrap();
    assert_eq!(text(bob.read().unwrap()), "* members: alice, bob");
    alice.send(Message::text("hi bob")).unwrap();
    assert_eq!(text(bob.read().unwrap()), "alice: hi bob");
    assert_eq!(text(alice.read().unwrap()), "alice: hi bob");
    bob.close(None).unwrap();
    assert_eq!(text(alice.read().unwrap()), "* bob left lobby");
}

#[test]
fn php_wss_port_example_echoes_with_its_entity() {
    let d = Daemon::start_example("php_wss_port", &config("", ""));
    let mut ws = connect(&d.url("/notifications/messanger/vpn/abc"));
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(text(ws.read().unwrap()), "Message from messanger: hello");
}

#[test]
fn echo_example_echoes() {
    let d = Daemon::start_example("echo", &config("", ""));
    echo(&mut connect(&d.url("/ws")), Message::text("hi"));
}
