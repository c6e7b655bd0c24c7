//! Binary upgrade (SIGUSR2): a new master takes over the listening socket
//! while clients keep echoing, the old master retires its workers as a
//! reload does and exits; a new master that fails leaves the old one
//! serving, pid file and all.

use crate::support::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tungstenite::Message;

/// Long enough that a short echo round never straddles the drain deadline.
const DRAIN_SECS: u64 = 5;

fn pid_in(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn upgrade_config(dir: &TempDir, extra: &str) -> String {
    config(
        &format!(
            "pid_file = \"{}\"\n{extra}",
            dir.path().join("wssd.pid").display()
        ),
        ECHO,
    )
    .replace(
        "drain_timeout = 10",
        &format!("drain_timeout = {DRAIN_SECS}"),
    )
}

#[test]
fn clients_echo_through_a_binary_upgrade_and_the_new_master_takes_over() {
    adopt_orphans();
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", &upgrade_config(&dir, ""));
    let pid_file = dir.path().join("wssd.pid");
    let d = Daemon::start_in(dir, path);
    let old_master = d.pid();
    let old_workers = d.wait_workers(2);
    assert_eq!(pid_in(&pid_file), Some(old_master));
    let url = d.url("/echo");

    // Long-lived clients of the old generation, echoing all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let signalled: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut threads = Vec::new();
    for c in 0..2 {
        let mut ws = connect(&url);
        let (stop, errors, signalled) = (stop.clone(), errors.clone(), signalled.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let msg = Message::text(format!("old {c} {i}"));
                if let Err(e) = ws.send(msg.clone()) {
                    errors
                        .lock()
                        .unwrap()
                        .push(format!("old client {c}: send: {e}"));
                    return;
                }
                match ws.read() {
                    Ok(got) if got == msg => {}
                    Ok(Message::Close(f)) => {
                        // Only 1001, and only once drain_timeout can have passed.
                        let code = f.map(|f| u16::from(f.code));
                        let since = signalled.lock().unwrap().map(|t| t.elapsed());
                        if code != Some(1001)
                            || since.is_none_or(|s| s < Duration::from_secs(DRAIN_SECS))
                        {
                            errors.lock().unwrap().push(format!(
                                "old client {c}: close {code:?} {since:?} after SIGUSR2"
                            ));
                        }
                        return;
                    }
                    Ok(other) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("old client {c}: got {other:?}"));
                        return;
                    }
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("old client {c}: read: {e}"));
                        return;
                    }
                }
            }
        }));
    }
    // New connections all the time: none may be refused or reset.
    let rounds = Arc::new(AtomicUsize::new(0));
    for c in 0..2 {
        let (stop, errors, rounds, url) =
            (stop.clone(), errors.clone(), rounds.clone(), url.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let result = try_connect(&url).and_then(|mut ws| {
                    for i in 0..3 {
                        let msg = Message::text(format!("new {c} {i}"));
                        ws.send(msg.clone()).map_err(|e| format!("send: {e}"))?;
                        let got = ws.read().map_err(|e| format!("read: {e}"))?;
                        if got != msg {
                            return Err(format!("echo mismatch: {got:?}"));
                        }
                    }
                    let _ = ws.close(None);
                    Ok(())
                });
                match result {
                    Ok(()) => {
                        rounds.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        errors.lock().unwrap().push(format!("new client {c}: {e}"));
                        return;
                    }
                }
            }
        }));
    }
    wait_for("clients to be busy", || {
        (rounds.load(Ordering::SeqCst) >= 4).then_some(())
    });

    *signalled.lock().unwrap() = Some(Instant::now());
    d.signal(Signal::SIGUSR2);
    let new_master: i32 = d.wait_new_master(None);
    let _guard = Adopted(new_master);
    assert_ne!(new_master, old_master);

    // The old master and its workers go once the drain is over.
    wait_for("the old workers to exit", || {
        old_workers.iter().all(|w| !alive(*w)).then_some(())
    });
    wait_for("the old master to exit", || {
        (!alive(old_master)).then_some(())
    });
    // New connections keep being served by the new master afterwards.
    let after = rounds.load(Ordering::SeqCst);
    wait_for("rounds after the old master left", || {
        (rounds.load(Ordering::SeqCst) >= after + 4).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("client thread");
    }
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "{errors:#?}");

    assert_eq!(pid_in(&d.dir.path().join("wssd.pid")), Some(new_master));
    assert!(
        !d.dir.path().join("wssd.pid.oldbin").exists(),
        "the old master removes wssd.pid.oldbin when it exits"
    );
    assert!(alive(new_master));
    let new_workers = wait_for("the new master's 2 workers", || {
        let w = children(new_master);
        (w.len() == 2).then_some(w)
    });
    assert!(new_workers.iter().all(|w| !old_workers.contains(w)));
    echo(
        &mut connect(&url),
        Message::text("served by the new master"),
    );
}

/// Starts a daemon, holds a client, sends SIGUSR2 (after `prepare`), and
/// checks that the old master rolls back and keeps serving.
fn rolls_back(extra: &str, prepare: impl FnOnce(&Daemon)) {
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", &upgrade_config(&dir, extra));
    let d = Daemon::start_in(dir, path);
    let pid_file = d.dir.path().join("wssd.pid");
    let workers = d.wait_workers(2);
    let mut ws = connect(&d.url("/echo"));
    prepare(&d);
    d.signal(Signal::SIGUSR2);
    let line = d.wait_log_contains("binary upgrade failed");
    assert!(line.contains("keeps serving"), "{line}");
    wait_for("the pid file to be put back", || {
        (pid_in(&pid_file) == Some(d.pid())).then_some(())
    });
    assert!(!d.dir.path().join("wssd.pid.oldbin").exists());
    echo(&mut ws, Message::text("still served"));
    echo(
        &mut connect(&d.url("/echo")),
        Message::text("new clients too"),
    );
    // Nothing was retired: the same workers, and the failed master was reaped.
    let now = d.wait_workers(2);
    assert_eq!(
        {
            let mut w = now;
            w.sort_unstable();
            w
        },
        {
            let mut w = workers;
            w.sort_unstable();
            w
        }
    );
}

#[test]
fn a_new_binary_that_exits_at_once_is_rolled_back() {
    rolls_back("upgrade_binary = \"/bin/false\"", |_| {});
}

#[test]
fn a_broken_config_for_the_new_master_is_rolled_back() {
    rolls_back("", |d| {
        let text = std::fs::read_to_string(&d.config_path).unwrap();
        d.rewrite_config(&text.replace("workers = 2", "workers = \"lots\""));
    });
}

/// The status listener is handed over like `listen`: after the old master
/// has exited, the new one answers on the same address (with port 0 a
/// new master that bound its own would be on another port, and before
/// the hand-over it could not bind a fixed one the old master held).
#[test]
fn the_status_listener_is_handed_to_the_new_master() {
    adopt_orphans();
    let dir = TempDir::new();
    let text = upgrade_config(&dir, "") + "\n[status]\nlisten = \"127.0.0.1:0\"\n";
    let path = dir.write("wssd.toml", &text);
    let d = Daemon::start_in(dir, path);
    let old_master = d.pid();
    let status: std::net::SocketAddr = d.wait_log("the status listener", |l| {
        l.split("status listener on ")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
    });
    let get = || {
        raw_exchange(
            status,
            b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
    };
    assert!(get().starts_with("HTTP/1.1 200"), "{}", get());

    d.signal(Signal::SIGUSR2);
    let new_master: i32 = d.wait_new_master(None);
    let _guard = Adopted(new_master);
    wait_for("the old master to exit", || {
        (!alive(old_master)).then_some(())
    });
    let reply = get();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// A SIGUSR2 to the new master while the old one still retires (its
/// `wssd.pid.oldbin` names it) would overwrite `.oldbin` and start a
/// third master: it is ignored with a log line saying why, as is one to
/// the retiring master. Once the old master is gone, SIGUSR2 works again.
#[test]
fn a_second_sigusr2_while_the_old_master_retires_is_ignored() {
    adopt_orphans();
    let dir = TempDir::new();
    let text = upgrade_config(&dir, "").replace(
        &format!("drain_timeout = {DRAIN_SECS}"),
        "drain_timeout = 600",
    );
    let path = dir.write("wssd.toml", &text);
    let d = Daemon::start_in(dir, path);
    let (pid_file, oldbin) = (
        d.dir.path().join("wssd.pid"),
        d.dir.path().join("wssd.pid.oldbin"),
    );
    let old_master = d.pid();
    // A client keeps the old master retiring.
    let mut ws = connect(&d.url("/echo"));
    echo(&mut ws, Message::text("old generation"));
    d.signal(Signal::SIGUSR2);
    let new_master: i32 = d.wait_new_master(None);
    let _guard = Adopted(new_master);
    wait_for("the pid files", || {
        (pid_in(&pid_file) == Some(new_master) && pid_in(&oldbin) == Some(old_master)).then_some(())
    });
    let new_workers = wait_for("the new master's 2 workers", || {
        let w = children(new_master);
        (w.len() == 2).then_some(w)
    });

    kill(Pid::from_raw(new_master), Signal::SIGUSR2).unwrap();
    let ignored = d.wait_log(&format!("SIGUSR2 ignored by pid {new_master}"), |l| {
        (l.contains(&format!("wssd[{new_master} master]")) && l.contains("SIGUSR2 ignored"))
            .then(|| l.to_string())
    });
    assert!(
        ignored.contains(&format!("old master pid {old_master}")),
        "{ignored}"
    );
    d.signal(Signal::SIGUSR2);
    let retiring = d.wait_log(&format!("SIGUSR2 ignored by pid {old_master}"), |l| {
        (l.contains(&format!("wssd[{old_master} master]")) && l.contains("SIGUSR2 ignored"))
            .then(|| l.to_string())
    });
    assert!(retiring.contains("stopping"), "{retiring}");
    // Nothing was started or moved: one new master, its own workers.
    assert_eq!(d.log_count("SIGUSR2: started new master"), 1);
    assert_eq!(pid_in(&oldbin), Some(old_master));
    assert_eq!(pid_in(&pid_file), Some(new_master));
    let mut now = children(new_master);
    now.sort_unstable();
    let mut before = new_workers.clone();
    before.sort_unstable();
    assert_eq!(now, before, "the new master started nothing");
    echo(&mut ws, Message::text("still served by the old master"));

    // The old master leaves with its last client; then SIGUSR2 works.
    ws.close(None).unwrap();
    let _ = ws.read();
    wait_for("the old master to exit", || {
        (!alive(old_master)).then_some(())
    });
    assert!(!oldbin.exists(), "the old master removes wssd.pid.oldbin");
    kill(Pid::from_raw(new_master), Signal::SIGUSR2).unwrap();
    let third: i32 = d.wait_new_master(Some(new_master));
    let _third = Adopted(third);
    // (The second master, with no client, may be gone already, and its
    // .oldbin with it.)
    wait_for("the pid file after the second upgrade", || {
        (pid_in(&pid_file) == Some(third)).then_some(())
    });
}

/// `wssd.pid.oldbin` naming a live wssd process (here one of the
/// daemon's workers) blocks an upgrade, with the reason; one naming a
/// live process of another program (a dead master's pid reused: here the
/// test itself) is stale and overwritten.
#[test]
fn a_live_oldbin_blocks_an_upgrade_and_a_stale_one_does_not() {
    adopt_orphans();
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", &upgrade_config(&dir, ""));
    let d = Daemon::start_in(dir, path);
    let (pid_file, oldbin) = (
        d.dir.path().join("wssd.pid"),
        d.dir.path().join("wssd.pid.oldbin"),
    );
    let worker = wait_for("a worker", || children(d.pid()).first().copied());
    std::fs::write(&oldbin, format!("{worker}\n")).unwrap();
    d.signal(Signal::SIGUSR2);
    let ignored = d.wait_log_contains("SIGUSR2 ignored");
    assert!(
        ignored.contains(&format!("wssd.pid.oldbin names pid {worker}")),
        "{ignored}"
    );
    assert_eq!(pid_in(&oldbin), Some(worker));
    assert_eq!(pid_in(&pid_file), Some(d.pid()));

    // A live pid of another program (this test): a stale file whose pid
    // was reused. (A pid that is gone is the same case, decided earlier
    // by kill(pid, 0) failing with ESRCH.)
    std::fs::write(&oldbin, format!("{}\n", std::process::id())).unwrap();
    d.signal(Signal::SIGUSR2);
    let new_master: i32 = d.wait_new_master(None);
    let _guard = Adopted(new_master);
    wait_for("the new pid file", || {
        (pid_in(&pid_file) == Some(new_master)).then_some(())
    });
}
