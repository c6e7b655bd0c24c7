//! `[limits]` follows a reload (SIGHUP): the new generation of workers
//! applies the new per-address limits, and the connections the old
//! generation still holds count against them (one table shared by every
//! generation). What cannot change without a restart is logged.

use crate::support::tools::python_command;
use crate::support::*;

use nix::sys::signal::Signal;

/// The echo route, one worker, and `[limits]` with `limits` in it.
fn limited(limits: &str) -> String {
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("\n[limits]\n{limits}\n")
    };
    config("workers = 1", &format!("{ECHO}{limits}"))
}

/// `wsadmit.py try URL --from ADDR`: "open ..." or "status NNN ...".
fn attempt_from(url: &str, from: &str) -> String {
    let out = run(
        python_command("support/wsadmit.py", &["try", url, "--from", from]),
        b"",
    );
    assert!(out.status.success(), "wsadmit.py failed: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// Holds `n` connections from `from` (one after the other); returns the
/// process and the line of each attempt.
fn hold(url: &str, n: usize, from: &str) -> (PyProc, Vec<String>) {
    let held = PyProc::spawn(
        "support/wsadmit.py",
        &["hold", url, &n.to_string(), "--from", from],
    );
    let lines: Vec<String> = (0..n).map(|_| held.line()).collect();
    assert_eq!(held.line(), "done");
    (held, lines)
}

/// Rewrites the config, sends SIGHUP and waits until generation
/// `generation` has its limits and the old worker `old` stopped
/// accepting (until then it could take a connection under the old limits).
fn reload(d: &Daemon, text: &str, generation: u32, old: i32) -> String {
    d.rewrite_config(text);
    d.signal(Signal::SIGHUP);
    let line = d.wait_log_contains(&format!("[limits] for generation {generation}:"));
    d.wait_log(&format!("worker pid {old} retiring"), |l| {
        (l.contains(&format!("wssd[{old} worker")) && l.contains("retiring")).then_some(())
    });
    line
}

#[test]
fn a_reload_applies_new_limits_and_counts_the_old_generations_connections() {
    let d = Daemon::start(&limited("max_connections_per_ip = 2\nipv6_prefix = 64"));
    let url = d.url("/echo");
    let first = d.wait_workers(1)[0];
    // Generation 1: 127.0.0.2 holds 2 connections; a third gets 429.
    let (old_held, lines) = hold(&url, 3, "127.0.0.2");
    assert!(
        lines[0].starts_with("open ") && lines[1].starts_with("open "),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("status 429 "), "{lines:?}");

    // Generation 2 allows 3: one more, the two old ones counting.
    let line = reload(
        &d,
        &limited("max_connections_per_ip = 3\nipv6_prefix = 48"),
        2,
        first,
    );
    assert!(line.contains("max_connections_per_ip = 3"), "{line}");
    let (new_held, lines) = hold(&url, 2, "127.0.0.2");
    assert!(lines[0].starts_with("open "), "{lines:?}");
    assert!(
        lines[1].starts_with("status 429 ") && lines[1].contains("3 connections open"),
        "the old generation's 2 connections count: {lines:?}"
    );
    // ipv6_prefix cannot change (the table counts by it): said so.
    let kept = d.wait_log_contains("ipv6_prefix stays 64");
    assert!(kept.contains("until a restart"), "{kept}");
    // Another address is not affected.
    assert!(attempt_from(&url, "127.0.0.3").starts_with("open "));
    // When the old generation's clients leave, their places come back.
    drop(old_held);
    wait_for("127.0.0.2's old places to come back", || {
        attempt_from(&url, "127.0.0.2")
            .starts_with("open ")
            .then_some(())
    });

    // Generation 3 lowers the limit to 1: 127.0.0.2 holds one already.
    let second = d.wait_workers(1)[0];
    reload(&d, &limited("max_connections_per_ip = 1"), 3, second);
    let refused = attempt_from(&url, "127.0.0.2");
    assert!(refused.starts_with("status 429 "), "{refused}");
    drop(new_held);
    wait_for("127.0.0.2's place to come back", || {
        attempt_from(&url, "127.0.0.2")
            .starts_with("open ")
            .then_some(())
    });
}

#[test]
fn limits_set_by_a_reload_apply_and_say_what_is_not_counted() {
    let d = Daemon::start(&limited(""));
    let url = d.url("/echo");
    let first = d.wait_workers(1)[0];
    let (_held, lines) = hold(&url, 2, "127.0.0.2");
    assert!(lines.iter().all(|l| l.starts_with("open ")), "{lines:?}");
    reload(&d, &limited("max_connections_per_ip = 1"), 2, first);
    d.wait_log_contains("connections already open (older generations) are not counted");
    let (_new, lines) = hold(&url, 2, "127.0.0.4");
    assert!(lines[0].starts_with("open "), "{lines:?}");
    assert!(lines[1].starts_with("status 429 "), "{lines:?}");
}
