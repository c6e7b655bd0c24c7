//! The Debian package's upgrade path: scripts/deb/binary-upgrade (run by
//! the postinst on a package upgrade) against the real daemon, under a
//! stand-in for systemd. systemd as PID 1 is not available here, so the
//! test plays its part: it receives the daemon's `$NOTIFY_SOCKET`
//! datagrams and keeps the unit's `MainPID`, `StatusText` and
//! `ActiveState` in files, which a stand-in `systemctl show -p NAME
//! --value UNIT` prints. The signals, the new master and the rollback are
//! the daemon's own.

use crate::support::*;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tungstenite::Message;

/// The stand-in `systemctl`: `show -p NAME --value UNIT` only.
const SYSTEMCTL: &str = r#"#!/bin/sh
[ "$1" = show ] && [ "$2" = -p ] && [ "$4" = --value ] || { echo "stand-in systemctl: unexpected: $*" >&2; exit 1; }
cat "$WSSD_TEST_SYSTEMD/$3" 2>/dev/null
exit 0
"#;

/// The unit's state as systemd would keep it from the notifications.
struct Systemd {
    dir: TempDir,
    stop: Arc<AtomicBool>,
}

impl Systemd {
    /// Binds the notification socket and starts applying what arrives.
    fn start() -> Systemd {
        let dir = TempDir::new();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let systemctl = bin.join("systemctl");
        std::fs::write(&systemctl, SYSTEMCTL).unwrap();
        std::fs::set_permissions(
            &systemctl,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let sock = UnixDatagram::bind(dir.path().join("notify")).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (state, done) = (dir.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::SeqCst) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    match line.split_once('=') {
                        Some(("MAINPID", v)) => set(&state, "MainPID", v),
                        Some(("STATUS", v)) => set(&state, "StatusText", v),
                        Some(("READY", "1")) => set(&state, "ActiveState", "active"),
                        Some(("RELOADING", "1")) => set(&state, "ActiveState", "reloading"),
                        Some(("STOPPING", "1")) => set(&state, "ActiveState", "deactivating"),
                        _ => {}
                    }
                }
            }
        });
        Systemd { dir, stop }
    }

    fn socket(&self) -> String {
        self.dir.path().join("notify").display().to_string()
    }

    fn get(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Runs scripts/deb/binary-upgrade for `config`; its exit code and
    /// what it said.
    fn binary_upgrade(&self, config: &Path) -> (Option<i32>, String) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/deb/binary-upgrade");
        let mut cmd = Command::new("sh");
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.arg(script)
            .arg("wssd.service")
            .env("PATH", path)
            .env("WSSD_TEST_SYSTEMD", self.dir.path())
            .env("WSSD_BIN", wssd_bin())
            .env("WSSD_CONFIG", config);
        let out = run(cmd, b"");
        eprintln!("binary-upgrade said:\n{}{}", out.stdout, out.stderr);
        (out.code(), out.stderr)
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Writes one property, whole (rename over the old file).
fn set(dir: &Path, name: &str, value: &str) {
    let tmp = dir.join(format!(".{name}"));
    if std::fs::write(&tmp, value).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(name));
    }
}

/// A daemon under the stand-in systemd, once it is the unit's main pid.
fn start(systemd: &Systemd, extra: &str) -> Daemon {
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", &config(extra, ECHO));
    let d = Daemon::start_in_env(dir, path, &[("NOTIFY_SOCKET", &systemd.socket())]);
    let pid = d.pid().to_string();
    wait_for("the daemon to be the unit's main pid", || {
        (systemd.get("MainPID") == pid && systemd.get("ActiveState") == "active").then_some(())
    });
    d
}

#[test]
fn a_package_upgrade_hands_the_service_to_the_new_binary() {
    adopt_orphans();
    let systemd = Systemd::start();
    let d = start(&systemd, "");
    let old = d.pid();
    let mut ws = connect(&d.url("/echo"));
    echo(&mut ws, Message::text("before"));

    let (code, said) = systemd.binary_upgrade(&d.config_path);
    assert_eq!(code, Some(0), "{said}");
    let new: i32 = systemd.get("MainPID").parse().expect("a main pid");
    let _guard = Adopted(new);
    assert_ne!(new, old);
    assert!(said.contains(&format!("main pid {old} -> {new}")), "{said}");
    assert!(
        systemd.get("StatusText").contains("upgraded from pid"),
        "{}",
        systemd.get("StatusText")
    );
    // No connection was dropped: the old client is still served by the
    // old master, new ones by the new master.
    echo(&mut ws, Message::text("during the drain"));
    echo(&mut connect(&d.url("/echo")), Message::text("new client"));
    ws.close(None).unwrap();
    let _ = ws.read();
    wait_for("the old master to exit", || (!alive(old)).then_some(()));
    echo(&mut connect(&d.url("/echo")), Message::text("after"));
}

#[test]
fn a_failed_upgrade_says_so_and_the_old_master_keeps_serving() {
    let systemd = Systemd::start();
    // The new "binary" exits at once: the old master rolls back.
    let d = start(&systemd, "upgrade_binary = \"/bin/false\"");
    let old = d.pid();
    let mut ws = connect(&d.url("/echo"));
    let (code, said) = systemd.binary_upgrade(&d.config_path);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("binary upgrade failed: new master pid"),
        "{said}"
    );
    assert!(said.contains(&format!("pid {old} keeps serving")), "{said}");
    assert_eq!(systemd.get("MainPID"), old.to_string());
    echo(&mut ws, Message::text("still served"));
}

#[test]
fn a_configuration_the_new_binary_rejects_leaves_the_old_one_serving() {
    let systemd = Systemd::start();
    let d = start(&systemd, "");
    let old = d.pid();
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    d.rewrite_config(&text.replace("workers = 2", "workers = \"lots\""));
    let (code, said) = systemd.binary_upgrade(&d.config_path);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("keeps running the old binary"), "{said}");
    // Nothing was signalled.
    assert_eq!(d.log_count("SIGUSR2"), 0);
    assert_eq!(systemd.get("MainPID"), old.to_string());
    echo(&mut connect(&d.url("/echo")), Message::text("still served"));
}

#[test]
fn a_unit_that_is_not_running_is_left_to_a_restart() {
    let systemd = Systemd::start();
    let d = start(&systemd, "");
    set(systemd.dir.path(), "ActiveState", "inactive");
    let (code, said) = systemd.binary_upgrade(&d.config_path);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is not running"), "{said}");
    assert_eq!(d.log_count("SIGUSR2"), 0);
}
