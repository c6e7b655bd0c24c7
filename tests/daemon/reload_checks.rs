//! A reload runs the host checks `--check` and the start run: a config
//! that would not start on this host is refused and the running one
//! keeps serving.

use crate::support::*;
use nix::sys::signal::Signal;
use tungstenite::Message;

#[test]
fn reload_refuses_a_config_that_could_not_start_on_this_host() {
    let d = Daemon::start(&config("", ECHO));
    let workers = d.wait_workers(2);
    let missing = d.dir.path().join("no-such-dir").join("wssd.log");
    d.rewrite_config(
        &config("", ECHO)
            .replace("127.0.0.1:0", &d.addr.to_string())
            .replace(
                "level = \"debug\"",
                &format!("level = \"debug\"\nfile = \"{}\"", missing.display()),
            ),
    );
    d.signal(Signal::SIGHUP);
    let line = d.wait_log_contains("reload failed");
    assert!(line.contains("log.file"), "{line}");
    assert!(line.contains("no-such-dir"), "{line}");
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("still serving"),
    );
    let mut now = d.wait_workers(2);
    now.sort_unstable();
    let mut before = workers;
    before.sort_unstable();
    assert_eq!(now, before, "a refused reload replaces no worker");
}
