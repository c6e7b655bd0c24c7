//! `wssd bench` over `wss://` against the real daemon with a TLS config:
//! echo, handshake and idle modes verify against the test CA (`--ca-file`)
//! or skip verification (`--insecure`); a certificate the bench cannot
//! verify is a handshake failure with a clear message. Speed is never
//! asserted.

mod bench_support;

use bench_support::{per_connection_sum, run_bench, JsonExt, TlsDaemon};

fn wss(d: &TlsDaemon, host: &str) -> String {
    d.url(host)
}

fn ca(d: &TlsDaemon) -> String {
    d.cert.display().to_string()
}

#[test]
fn wss_echo_verifies_the_certificate_and_every_echo() {
    let d = TlsDaemon::start();
    let (url, ca) = (wss(&d, "localhost"), ca(&d));
    let run = run_bench(&[
        &url,
        "--ca-file",
        &ca,
        "-c",
        "4",
        "-d",
        "1",
        "-w",
        "4",
        "--text",
        "--json",
    ]);
    let j = run.clean_json();
    assert_eq!(j["connected"].u64(), 4);
    let messages = j["messages"].u64();
    assert!(messages > 0, "{j:?}");
    assert_eq!(messages, per_connection_sum(&j));
    assert_eq!(j["messages_sent"].u64(), messages);
    // Large messages span many TLS records and reads.
    let run = run_bench(&[
        &url,
        "--ca-file",
        &ca,
        "-c",
        "2",
        "-d",
        "1",
        "-s",
        "100000",
        "--json",
    ]);
    let j = run.clean_json();
    assert!(j["messages"].u64() > 0, "{j:?}");
}

#[test]
fn wss_handshake_mode_completes_tls_handshakes() {
    let d = TlsDaemon::start();
    let run = run_bench(&[
        &wss(&d, "127.0.0.1"),
        "--insecure",
        "-c",
        "3",
        "-d",
        "1",
        "-m",
        "handshake",
        "--json",
    ]);
    let j = run.clean_json();
    let handshakes = j["handshakes"].u64();
    assert!(handshakes > 0, "{j:?}");
    assert_eq!(handshakes, per_connection_sum(&j));
}

#[test]
fn wss_idle_mode_reports_memory_per_tls_connection() {
    let d = TlsDaemon::start();
    let pid = d.pid().to_string();
    let run = run_bench(&[
        &wss(&d, "127.0.0.1"),
        "--ca-file",
        &ca(&d),
        "-c",
        "20",
        "-d",
        "1",
        "-m",
        "idle",
        "--pid",
        &pid,
        "--json",
    ]);
    let j = run.clean_json();
    assert_eq!(j["connected"].u64(), 20);
    assert_eq!(j["messages"].u64(), 20);
    assert!(j["memory"]["holding_rss_kib"].u64() > 0, "{j:?}");
}

#[test]
fn an_unverifiable_certificate_is_a_handshake_error() {
    let d = TlsDaemon::start();
    // No --ca-file: the self-signed certificate is not trusted.
    let run = run_bench(&[&wss(&d, "localhost"), "-c", "2", "-d", "1", "--json"]);
    assert_eq!(
        run.status, 2,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains("TLS handshake failed"),
        "stderr: {}",
        run.stderr
    );
    // The daemon still serves a client that trusts it.
    let run = run_bench(&[
        &wss(&d, "localhost"),
        "--ca-file",
        &ca(&d),
        "-c",
        "1",
        "-d",
        "1",
    ]);
    assert_eq!(
        run.status, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

#[test]
fn tls_options_need_wss_and_a_readable_ca_file() {
    let run = run_bench(&["ws://127.0.0.1:1/", "--insecure", "-d", "1"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("wss://"), "stderr: {}", run.stderr);
    let run = run_bench(&["wss://127.0.0.1:1/", "--ca-file", "/nonexistent/ca.pem"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("/nonexistent/ca.pem"),
        "stderr: {}",
        run.stderr
    );
}
