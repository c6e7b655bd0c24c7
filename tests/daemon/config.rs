//! Configuration errors: exit status 2 and a message naming the key,
//! before anything binds; `--check`, `--help`, `--version`.

use crate::support::*;
use std::process::Command;

/// Runs `wssd ARGS`: exit code, stdout, stderr.
fn wssd(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(wssd_bin());
    cmd.args(args);
    let out = run(cmd, b"");
    (out.code().unwrap_or(-1), out.stdout, out.stderr)
}

fn check(text: &str) -> (i32, String) {
    let dir = TempDir::new();
    let path = dir.write("bad.toml", text);
    let (code, _, err) = wssd(&["--config", path.to_str().unwrap()]);
    (code, err)
}

#[test]
fn each_kind_of_bad_config_exits_2_naming_the_key() {
    let cases = [
        ("[server]\nlisen = \"127.0.0.1:0\"\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "server.lisen"),
        ("[serverr]\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "serverr"),
        ("[server]\nworkers = \"many\"\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "server.workers"),
        ("[server]\nworkers = 0\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "server.workers"),
        ("[server]\nhandshake_timeout = \"soon\"\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "server.handshake_timeout"),
        ("[server]\nlisten = 8080\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "server.listen"),
        ("[server]\nlisten = \"127.0.0.1:0\"\n", "routes"),
        ("[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "routes[1].path"),
        ("[[routes]]\npath=\"/e\"\nhandler=\"nosuch\"\n", "routes[0].handler"),
        ("[[routes]]\npath=\"e\"\nhandler=\"echo\"\n", "routes[0].path"),
        ("[[routes]]\npath=\"/e\"\nhandler=\"echo\"\nextra=1\n", "routes[0].extra"),
        ("[log]\nlevel = \"loud\"\n[[routes]]\npath=\"/e\"\nhandler=\"echo\"\n", "log.level"),
        ("this is = = not toml", "not valid TOML"),
    ];
    for (text, key) in cases {
        let (code, err) = check(text);
        assert_eq!(code, 2, "config {text:?} should exit 2; stderr: {err}");
        assert!(
            err.contains(key),
            "stderr for {text:?} should name {key}: {err}"
        );
        assert!(
            err.contains("bad.toml"),
            "stderr should name the file: {err}"
        );
    }
}

#[test]
fn missing_file_exits_2() {
    let (code, _, err) = wssd(&["--config", "/nonexistent/wssd.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/wssd.toml"), "{err}");
}

#[test]
fn check_validates_without_serving() {
    let dir = TempDir::new();
    // A port this test holds: --check succeeds only if it does not bind.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let good = dir.write("good.toml", &config("", ECHO).replace("127.0.0.1:0", &addr));
    let (code, out, _) = wssd(&["--check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("valid"), "{out}");
    let bad = dir.write("bad.toml", "[server]\nworkers = -1\n");
    let (code, _, err) = wssd(&["--check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("server.workers"), "{err}");
}

#[test]
fn shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/wssd.toml");
    let (code, out, err) = wssd(&["--check", "--config", path]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn help_and_version() {
    let (code, out, _) = wssd(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--config") && out.contains("--check"), "{out}");
    let (code, out, _) = wssd(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}
