//! `[log] file` and `format = "json"`: master and workers append whole
//! JSON lines to one file, and SIGUSR1 after logrotate moved it makes
//! every process write to the new file.

use crate::support::*;

use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tungstenite::Message;

/// The master (and its workers) killed and reaped on drop.
struct Master(Child);

impl Drop for Master {
    fn drop(&mut self) {
        for w in children(self.0.id() as i32) {
            let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every line of `path`, each parsed as one JSON object.
fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            for key in ["time", "level", "pid", "role", "worker", "message"] {
                assert!(v.get(key).is_some(), "no {key}: {l}");
            }
            v
        })
        .collect()
}

fn said_by(lines: &[serde_json::Value], pid: i32, needle: &str) -> bool {
    lines
        .iter()
        .any(|v| v["pid"] == pid && v["message"].as_str().is_some_and(|m| m.contains(needle)))
}

#[test]
fn sigusr1_after_a_move_makes_every_process_write_json_to_the_new_file() {
    let dir = TempDir::new();
    let log = dir.path().join("wssd.log");
    let path = dir.write(
        "wssd.toml",
        &config("", ECHO).replace(
            "level = \"debug\"",
            "level = \"info\"\nfile = \"wssd.log\"\nformat = \"json\"",
        ),
    );
    let master = Master(
        Command::new(wssd_bin())
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn wssd"),
    );
    let pid = master.0.id() as i32;
    // `file = "wssd.log"` is relative to the config's directory.
    let addr: String = wait_for("the master's first line in the log file", || {
        json_lines(&log).iter().find_map(|v| {
            (v["pid"] == pid && v["role"] == "master").then_some(())?;
            let m = v["message"].as_str()?;
            Some(
                m.split("listening on ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_string(),
            )
        })
    });
    let workers = wait_for("2 workers", || {
        let w = children(pid);
        (w.len() == 2).then_some(w)
    });
    echo(
        &mut connect(&format!("ws://{addr}/echo")),
        Message::text("logged"),
    );

    // logrotate: move the file, then SIGUSR1 to the master.
    let rotated = dir.path().join("wssd.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
    wait_for("every process to write to the new file", || {
        let lines = json_lines(&log);
        (said_by(&lines, pid, "reopened the log file")
            && workers
                .iter()
                .all(|w| said_by(&lines, *w, "reopened the log file")))
        .then_some(())
    });
    let lines = json_lines(&log);
    for v in &lines {
        if workers.iter().any(|w| v["pid"] == *w) {
            assert_eq!(v["role"], "worker", "{v}");
            assert!(v["worker"].is_u64(), "{v}");
        } else {
            assert_eq!(v["role"], "master", "{v}");
            assert!(v["worker"].is_null(), "{v}");
        }
    }
    // The rotated file got nothing after the move, and stays JSON.
    assert!(!said_by(&json_lines(&rotated), pid, "reopened"));
    // New work still logs to the new file (a stop, here).
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_for("the stop in the new file", || {
        said_by(&json_lines(&log), pid, "exiting").then_some(())
    });
}
