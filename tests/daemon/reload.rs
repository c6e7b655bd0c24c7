//! SIGHUP: a valid new config adds routes without dropping live clients;
//! a broken one is reported and the old config keeps serving.

use crate::support::*;
use nix::sys::signal::Signal;
use tungstenite::Message;

const SHOUT: &str = "[[routes]]\npath = \"/room/{name}\"\nhandler = \"broadcast\"\n";

#[test]
fn reload_adds_a_route_and_keeps_old_connections() {
    let d = Daemon::start(
        &config("listen_placeholder = 1", ECHO).replace("listen_placeholder = 1", ""),
    );
    let mut before = connect(&d.url("/echo"));
    echo(&mut before, Message::text("before reload"));
    let old_workers = d.wait_workers(2);

    // Same port as now, so the listener is kept.
    let new_config =
        config("", &format!("{ECHO}\n{SHOUT}")).replace("127.0.0.1:0", &d.addr.to_string());
    d.rewrite_config(&new_config);
    d.signal(Signal::SIGHUP);
    d.wait_log_contains("reloaded");

    let mut room = wait_for("the new route", || try_connect(&d.url("/room/lobby")).ok());
    room.send(Message::text("hi")).unwrap();
    assert_eq!(room.read().unwrap(), Message::text("hi"));
    echo(&mut before, Message::text("after reload"));
    // The old generation stays while it has a client, then goes.
    assert!(old_workers.iter().any(|w| alive(*w)));
    drop(before);
    wait_for("the old generation to exit", || {
        old_workers.iter().all(|w| !alive(*w)).then_some(())
    });
}

#[test]
fn broken_config_on_reload_keeps_serving() {
    let d = Daemon::start(&config("", ECHO));
    let mut ws = connect(&d.url("/echo"));
    let workers = d.wait_workers(2);
    d.rewrite_config("[server]\nworkers = \"lots\"\n");
    d.signal(Signal::SIGHUP);
    let line = d.wait_log_contains("reload failed");
    assert!(line.contains("server.workers"), "{line}");
    echo(&mut ws, Message::text("still fine"));
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("new clients too"),
    );
    assert_eq!(d.workers().len(), 2);
    for w in workers {
        assert!(alive(w), "workers must not be replaced by a failed reload");
    }
}

#[test]
fn reload_to_a_new_address_binds_it_and_releases_the_old_one() {
    let d = Daemon::start(&config("", ECHO));
    let old_addr = d.addr;
    let mut before = connect(&d.url("/echo"));
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    d.rewrite_config(&config("", ECHO).replace("127.0.0.1:0", &free.to_string()));
    d.signal(Signal::SIGHUP);
    d.wait_log_contains("reloaded");
    let mut moved = wait_for("the new address", || {
        try_connect(&format!("ws://{free}/echo")).ok()
    });
    echo(&mut moved, Message::text("new address"));
    echo(&mut before, Message::text("old connection still served"));
    drop(before);
    wait_for("the old address to be released", || {
        std::net::TcpStream::connect(old_addr)
            .is_err()
            .then_some(())
    });
}
