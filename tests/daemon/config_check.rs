//! `wssd --check` catches what would fail the start on this host (an
//! address that is not on this machine, a low port without the
//! capability, a pid file in a missing directory, a user the master
//! cannot switch to), reports every config error at once with hints, and
//! start-up failures print one message with a documented exit status.
//! Every case runs the real binary.

use crate::support::*;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Exit status, stdout and stderr of `wssd` (prefixed by `wrapper`, e.g.
/// setpriv). Bounded: a process that keeps running past the deadline
/// (a daemon that started when it should not have) is killed with its
/// process group and the test fails.
fn run_wssd(wrapper: &[&str], args: &[&str]) -> (i32, String, String) {
    let dir = TempDir::new();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let bin = wssd_bin();
    let (program, rest) = match wrapper.split_first() {
        Some((p, rest)) => (p.to_string(), [rest, &[bin]].concat()),
        None => (bin.to_string(), Vec::new()),
    };
    let mut child = Command::new(program)
        .args(rest)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("run wssd");
    let pgid = Pid::from_raw(child.id() as i32);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for wssd") {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.wait();
            panic!("wssd {args:?} did not exit: it should have refused to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Nothing it forked may outlive the test.
    let _ = killpg(pgid, Signal::SIGKILL);
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(out_path).unwrap(),
        std::fs::read_to_string(err_path).unwrap(),
    )
}

/// `wssd --check` on `text` (written to a scratch file).
fn check_text(text: &str) -> (i32, String) {
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", text);
    let (code, out, err) = run_wssd(&[], &["--check", "--config", path.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

/// Starting the daemon on `text`; only for configs that must not start.
fn start_text(text: &str) -> (i32, String) {
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", text);
    let (code, out, err) = run_wssd(&[], &["--config", path.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

fn with_listen(listen: &str, extra: &str) -> String {
    config(extra, ECHO).replace("127.0.0.1:0", listen)
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn an_address_not_on_this_host_fails_check_and_start_with_status_2() {
    // TEST-NET-3 (RFC 5737): on no interface of a test machine.
    let text = with_listen("203.0.113.7:8080", "");
    for (code, err) in [check_text(&text), start_text(&text)] {
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("key `server.listen`"), "{err}");
        assert!(err.contains("203.0.113.7:8080"), "{err}");
        assert!(err.contains("wssd.toml"), "{err}");
    }
}

#[test]
fn a_local_address_passes_check_without_taking_its_port() {
    // The test holds the port: --check binds port 0 of the IP, never it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = with_listen(&held.local_addr().unwrap().to_string(), "");
    let (code, out) = check_text(&text);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_pid_file_in_a_missing_directory_fails_check_and_start() {
    let dir = TempDir::new();
    let missing = dir.path().join("no-such-dir").join("wssd.pid");
    let text = with_listen(
        "127.0.0.1:0",
        &format!("pid_file = \"{}\"", missing.display()),
    );
    for (code, err) in [check_text(&text), start_text(&text)] {
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("key `server.pid_file`"), "{err}");
        assert!(err.contains("no-such-dir"), "{err}");
    }
    // The same file in a directory that exists is fine.
    let fine = dir.path().join("wssd.pid");
    let text = with_listen("127.0.0.1:0", &format!("pid_file = \"{}\"", fine.display()));
    let (code, out) = check_text(&text);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_pid_file_in_a_read_only_directory_fails_check() {
    if is_root() {
        // root may write anywhere (short of a read-only mount); the
        // unprivileged side is covered below through setpriv.
        if !have("setpriv") {
            eprintln!("skipped: needs setpriv to test as an unprivileged user");
            return;
        }
    }
    let dir = TempDir::new();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let text = with_listen(
        "127.0.0.1:0",
        &format!("pid_file = \"{}\"", ro.join("wssd.pid").display()),
    );
    let path = dir.write("wssd.toml", &text);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let wrapper: &[&str] = if is_root() {
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        &[]
    };
    let (code, _, err) = run_wssd(wrapper, &["--check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("key `server.pid_file`"), "{err}");
    assert!(err.contains("not writable"), "{err}");
}

#[test]
fn a_low_port_without_the_capability_fails_check() {
    let limit: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if limit <= 80 || !is_root() || !have("setpriv") {
        eprintln!("skipped: needs root, setpriv and ip_unprivileged_port_start above 80");
        return;
    }
    let text = with_listen("127.0.0.1:80", "");
    let dir = TempDir::new();
    let path = dir.write("wssd.toml", &text);
    let path = path.to_str().unwrap();
    // Root (with CAP_NET_BIND_SERVICE): valid.
    let (code, out, err) = run_wssd(&[], &["--check", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
    // Without the capability in the bounding set: refused, naming the key.
    let (code, _, err) = run_wssd(
        &["setpriv", "--bounding-set=-net_bind_service"],
        &["--check", "--config", path],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("key `server.listen`"), "{err}");
    assert!(err.contains("CAP_NET_BIND_SERVICE"), "{err}");
}

#[test]
fn a_user_the_master_cannot_switch_to_fails_check() {
    if !is_root() || !have("setpriv") {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let dir = TempDir::new();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = dir.write("wssd.toml", &with_listen("127.0.0.1:0", "user = \"root\""));
    let path = path.to_str().unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let (code, _, err) = run_wssd(&nobody, &["--check", "--config", path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("key `server.user`"), "{err}");
    assert!(err.contains("not as root"), "{err}");
    // Already running as that user: nothing to switch, valid.
    let own = with_listen("127.0.0.1:0", "user = \"65534\"");
    let path = dir.write("own.toml", &own);
    let (code, out, err) = run_wssd(&nobody, &["--check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn every_config_error_is_reported_at_once() {
    let text = "[server]\nworkers = 0\nidle_timeout = \"soon\"\nlisen = \"127.0.0.1:0\"\n\
                [log]\nlevel = \"loud\"\n[[routes]]\npath = \"/e\"\n";
    let (code, err) = check_text(text);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("5 errors"), "{err}");
    for key in [
        "server.workers",
        "server.idle_timeout",
        "server.lisen",
        "log.level",
        "routes[0].handler",
    ] {
        assert!(
            err.contains(&format!("key `{key}`")),
            "{key} missing: {err}"
        );
    }
}

#[test]
fn host_problems_are_reported_with_the_other_errors() {
    let text = "[server]\nlisten = \"203.0.113.7:8080\"\npid_file = \"/no-such-dir-wssd/p\"\n\
                [[routes]]\npath = \"/e\"\nhandler = \"nosuch\"\n";
    let (code, err) = check_text(text);
    assert_eq!(code, 2, "{err}");
    for key in ["routes[0].handler", "server.listen", "server.pid_file"] {
        assert!(
            err.contains(&format!("key `{key}`")),
            "{key} missing: {err}"
        );
    }
}

#[test]
fn an_unknown_key_gets_a_suggestion() {
    let (code, err) = check_text(&with_listen("127.0.0.1:0", "worker = 3"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("key `server.worker`: unknown key: did you mean `workers`?"),
        "{err}"
    );
}

#[test]
fn a_toml_syntax_error_keeps_its_snippet_with_the_marker_under_the_error() {
    let (code, err) = check_text("[server]\nworkers = = 4\n");
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with("workers = = 4"))
        .unwrap_or_else(|| panic!("no snippet line: {err}"));
    let column = lines[at + 1].find('^').expect("a ^ line under the snippet");
    // The marker sits under the second `=`.
    assert_eq!(lines[at].rfind('='), Some(column), "{err}");
    assert!(
        lines[0].contains("wssd.toml") && lines[0].contains("line 2"),
        "{err}"
    );
}

#[test]
fn a_bind_failure_exits_1_with_one_message_naming_server_listen() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    // The port is held by a listening socket: SO_REUSEADDR does not help.
    let (code, err) = start_text(&with_listen(&addr, ""));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("cannot listen on").count(), 1, "once: {err}");
    assert!(err.contains("key `server.listen`"), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("EADDRINUSE"), "{err}");
}

#[test]
fn the_installed_config_matches_the_unit_and_is_valid_apart_from_its_user() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = std::fs::read_to_string(root.join("config/installed.toml")).unwrap();
    let unit = std::fs::read_to_string(root.join("systemd/wssd.service")).unwrap();
    // The pid file lives in the unit's RuntimeDirectory, the only place
    // ProtectSystem=strict lets it write, and both name the user wssd.
    assert!(unit.contains("\nRuntimeDirectory=wssd\n"), "{unit}");
    assert!(unit.contains("\nUser=wssd\n"), "{unit}");
    assert!(installed.contains("\npid_file = \"/run/wssd/wssd.pid\"\n"));
    assert!(installed.contains("\nuser = \"wssd\"\n"));
    let example = std::fs::read_to_string(root.join("config/wssd.toml")).unwrap();
    assert!(example.contains("pid_file = \"/run/wssd/wssd.pid\""));
    // Valid once the user and the runtime directory exist: stand them in
    // with this process's user and a scratch directory.
    let dir = TempDir::new();
    let me = nix::unistd::Uid::effective().to_string();
    let text = installed
        .replace("user = \"wssd\"", &format!("user = \"{me}\""))
        .replace("/run/wssd/", &format!("{}/", dir.path().display()))
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    let (code, out) = check_text(&text);
    assert_eq!(code, 0, "{out}");
}
