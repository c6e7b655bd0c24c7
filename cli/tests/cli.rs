//! The `wssd` command line keeps its shape across the workspace split: the
//! daemon's options and the `client` and `bench` subcommands are all there.
//! (The daemon, client and bench behaviour is tested in tests/ and
//! bench/tests/, which run this same binary.)

use std::process::Command;

/// Runs `wssd ARGS`; returns (exit code, stdout).
fn wssd(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wssd"))
        .args(args)
        .output()
        .expect("run the wssd binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn help_lists_the_daemon_options_and_both_subcommands() {
    let (code, out) = wssd(&["--help"]);
    assert_eq!(code, Some(0), "{out}");
    for needle in ["--config", "--check", "client", "bench"] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}

#[test]
fn subcommands_have_their_options() {
    let (code, out) = wssd(&["client", "--help"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("--send"), "{out}");
    let (code, out) = wssd(&["bench", "--help"]);
    assert_eq!(code, Some(0), "{out}");
    for needle in ["--connections", "--mode", "--ca-file", "--insecure"] {
        assert!(out.contains(needle), "bench --help lacks {needle}:\n{out}");
    }
}
