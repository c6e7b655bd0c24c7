//! Under systemd (`$NOTIFY_SOCKET`), a binary upgrade hands the unit's
//! main pid over: the old master, which systemd listens to, sends
//! `MAINPID=<new pid>`; the new master sends nothing before that (with
//! `NotifyAccess=main` it would be refused).

use crate::support::*;

use std::os::unix::net::UnixDatagram;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn the_old_master_announces_the_new_main_pid() {
    adopt_orphans();
    let sockdir = TempDir::new();
    let sock_path = sockdir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    // Given to this daemon alone (the new master inherits it from it).
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", &config("", ECHO));
    let socket = sock_path.display().to_string();
    let d = Daemon::start_in_env(dir, path, &[("NOTIFY_SOCKET", &socket)]);
    let old = d.pid();
    let mut buf = [0u8; 4096];
    let mut next = || {
        let (n, _) = sock.recv_from(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(
        ready.contains("READY=1") && ready.contains(&format!("MAINPID={old}")),
        "{ready}"
    );

    d.wait_workers(2);
    d.signal(Signal::SIGUSR2);
    let new: i32 = d.wait_new_master(None);
    let _guard = Adopted(new);
    // The old master says what it does (systemctl status shows it), then
    // hands over: the next messages are its own.
    assert_eq!(
        next(),
        format!("STATUS=binary upgrade: new master pid {new} starting")
    );
    let handover = next();
    assert_eq!(
        handover,
        format!(
            "MAINPID={new}\nREADY=1\nSTATUS=listening on {}; upgraded from pid {old}",
            d.addr
        )
    );
    // After it, the new master is the main pid; its reload notifications
    // count (RELOADING=1 then READY=1).
    wait_for("the old master to exit", || (!alive(old)).then_some(()));
    kill(Pid::from_raw(new), Signal::SIGHUP).unwrap();
    assert!(next().starts_with("RELOADING=1"));
    assert_eq!(next(), "READY=1");
}
