//! Process titles as `ps -o args` shows them, and an environment that is
//! still whole after the title took its memory.

use crate::support::*;

use std::collections::BTreeSet;
use std::process::Command;

use nix::sys::signal::Signal;
use tungstenite::Message;

/// `ps -o args= -p PID` (procps), trimmed.
fn ps_args(pid: i32) -> String {
    let out = Command::new("ps")
        .args(["-o", "args=", "-p", &pid.to_string()])
        .output()
        .expect("ps (procps) must be installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ps_shows_master_worker_and_draining_titles() {
    let d = Daemon::start(&config("", ECHO));
    let config_path = d.config_path.display().to_string();
    assert_eq!(
        ps_args(d.pid()),
        format!("wssd: master process --config {config_path}")
    );
    let first = d.wait_workers(2);
    let mut titles: Vec<String> = first.iter().map(|w| ps_args(*w)).collect();
    titles.sort();
    assert_eq!(
        titles,
        [
            "wssd: worker process 0 (generation 1)",
            "wssd: worker process 1 (generation 1)"
        ]
    );

    // A client keeps the first generation alive through a reload.
    let mut ws = connect(&d.url("/echo"));
    echo(&mut ws, Message::text("hold"));
    d.rewrite_config(&config("", ECHO).replace("127.0.0.1:0", &d.addr.to_string()));
    d.signal(Signal::SIGHUP);
    d.wait_log_contains("reloaded");
    wait_for("draining titles on generation 1", || {
        first
            .iter()
            .filter(|w| alive(**w))
            .any(|w| ps_args(*w).ends_with("(generation 1, draining)"))
            .then_some(())
    });
    wait_for("generation 2 titles", || {
        let titles: Vec<String> = d.workers().iter().map(|w| ps_args(*w)).collect();
        (titles
            .iter()
            .filter(|t| t.starts_with("wssd: worker process ") && t.ends_with("(generation 2)"))
            .count()
            == 2)
            .then_some(())
    });
}

#[test]
fn a_titled_master_passes_its_whole_environment_and_arguments_to_a_child() {
    // The child is the binary upgrade's new master: a script here, which
    // records what it got and fails (the old master then rolls back).
    let dir = TempDir::new();
    let dump = dir.path().join("dump.sh");
    std::fs::write(
        &dump,
        format!(
            "#!/bin/sh\nenv -0 > '{0}/env'\nprintf '%s\\n' \"$0\" \"$@\" > '{0}/args'\nexit 1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = dir.write(
        "wssd.toml",
        &config(&format!("upgrade_binary = \"{}\"", dump.display()), ECHO),
    );
    let d = Daemon::start_in(dir, path.clone());
    d.wait_workers(2);
    assert!(ps_args(d.pid()).starts_with("wssd: master process"));
    d.signal(Signal::SIGUSR2);
    d.wait_log_contains("binary upgrade failed");

    let args = std::fs::read_to_string(d.dir.path().join("args")).unwrap();
    assert_eq!(
        args,
        format!("{}\n--config\n{}\n", dump.display(), path.display())
    );
    let got: BTreeSet<String> = std::fs::read_to_string(d.dir.path().join("env"))
        .unwrap()
        .split('\0')
        .map(str::to_string)
        .collect();
    // Everything the test process has (the daemon was started with it,
    // RUST_LOG removed), byte for byte; sh adds or changes a few.
    let shell = ["PWD", "OLDPWD", "SHLVL", "_"];
    for (k, v) in std::env::vars() {
        if k == "RUST_LOG" || shell.contains(&k.as_str()) {
            continue;
        }
        assert!(got.contains(&format!("{k}={v}")), "{k} missing or changed");
    }
    assert!(got.iter().any(|kv| kv.starts_with("WSSD_LISTEN_FDS=")));
}
