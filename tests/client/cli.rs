//! The `wssd client` CLI: --send exchange mode, stdin mode, binary, and the
//! exit status and stderr line of each failure.

use crate::support::{closed_port, Certs, Output, SilentServer, Tinyproxy, DEADLINE};
use crate::{run_wssd, ws_server, ws_server_tls};

fn client(url: &str, extra: &[&str], stdin: &[u8]) -> Output {
    let timeout = DEADLINE.as_secs().to_string();
    let mut args = vec!["client", url, "--timeout", &timeout];
    args.extend_from_slice(extra);
    run_wssd(&args, stdin)
}

/// Asserts a failure: non-zero exit and exactly one stderr line containing all `needles`.
fn assert_failure(out: &Output, needles: &[&str]) {
    assert!(
        !out.status.success(),
        "expected failure, got {:?}; stdout {:?}",
        out.status,
        out.stdout
    );
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "expected one stderr line, got {:?}",
        out.stderr
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "stderr {:?} lacks {needle:?}",
            lines[0]
        );
    }
    assert!(lines[0].starts_with("wssd client: "), "{:?}", lines[0]);
}

#[test]
fn send_mode_prints_each_reply_on_its_own_line() {
    let server = ws_server();
    let out = client(
        &server.url("/"),
        &["--send", "one", "--send", "two words", "--send", "push:1"],
        b"ignored\n",
    );
    assert!(
        out.status.success(),
        "status {:?}, stderr {}",
        out.status,
        out.stderr
    );
    assert_eq!(out.stdout, "one\ntwo words\npush-1\n");
    assert_eq!(out.stderr, "");
}

#[test]
fn send_mode_with_headers_and_fragments() {
    let server = ws_server();
    let long = "L".repeat(10_000);
    let out = client(
        &server.url("/h?x=1"),
        &[
            "-H",
            "X-One: 1",
            "--header",
            "X-Two:two",
            "--fragment-size",
            "1000",
            "--send",
            "headers?",
            "--send",
            &long,
        ],
        b"",
    );
    assert!(out.status.success(), "stderr {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{:?}", out.stdout);
    assert!(
        lines[0].contains(r#""x-one": "1""#) && lines[0].contains(r#""x-two": "two""#),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(r#""path": "/h?x=1""#), "{}", lines[0]);
    assert_eq!(lines[1], long);
}

#[test]
fn binary_mode_sends_binary_messages() {
    let server = ws_server();
    // The server echoes binary as binary; the CLI prints the raw payload.
    let out = client(&server.url("/"), &["--binary", "--send", "raw bytes"], b"");
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "raw bytes\n");
    let out = client(&server.url("/"), &["--binary"], b"a\nb\n");
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "a\nb\n");
}

#[test]
fn stdin_mode_sends_lines_and_prints_everything_received() {
    let server = ws_server();
    let out = client(
        &server.url("/"),
        &[],
        b"first\r\nsecond\nping-me\npush:3\nlast",
    );
    assert!(
        out.status.success(),
        "status {:?}, stderr {}",
        out.status,
        out.stderr
    );
    assert_eq!(
        out.stdout,
        "first\nsecond\npong-received\npush-1\npush-2\npush-3\nlast\n"
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn stdin_mode_ends_when_the_server_closes() {
    let server = ws_server();
    let out = client(&server.url("/"), &[], b"hello\nclose:1000:done\n");
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "hello\n");
    let out = client(&server.url("/"), &[], b"close:4001:custom reason\n");
    assert_failure(&out, &["4001", "custom reason"]);
}

#[test]
fn wss_with_ca_file_and_insecure() {
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    let ca = certs.cert.to_str().unwrap();
    let out = client(
        &server.url("/"),
        &["--ca-file", ca, "--send", "secure"],
        b"",
    );
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "secure\n");
    let out = client(
        &server.url("/"),
        &["--insecure", "--send", "unchecked"],
        b"",
    );
    assert!(out.status.success(), "stderr {}", out.stderr);
    assert_eq!(out.stdout, "unchecked\n");
}

#[test]
fn failure_tls_verification() {
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    let out = client(&server.url("/"), &["--send", "x"], b"");
    assert_failure(&out, &["certificate verification failed", "--ca-file"]);
}

#[test]
fn failure_connection_refused() {
    let port = closed_port();
    let out = client(&format!("ws://127.0.0.1:{port}/"), &["--send", "x"], b"");
    assert_failure(&out, &["connection refused", &format!("127.0.0.1:{port}")]);
}

#[test]
fn failure_name_not_resolved() {
    let out = client("ws://no-such-host.invalid:8080/", &["--send", "x"], b"");
    assert_failure(&out, &["cannot resolve", "no-such-host.invalid"]);
}

#[test]
fn failure_handshake_http_status() {
    let server = ws_server();
    let out = client(&server.url("/forbidden"), &["--send", "x"], b"");
    assert_failure(&out, &["HTTP 403"]);
}

#[test]
fn failure_timeout() {
    let server = SilentServer::start();
    let out = run_wssd(
        &[
            "client",
            &format!("ws://127.0.0.1:{}/", server.port),
            "--timeout",
            "1",
            "--send",
            "x",
        ],
        b"",
    );
    assert_failure(&out, &["timed out"]);
    // A server that accepts the handshake but never answers the message.
    let server = ws_server();
    let out = run_wssd(
        &[
            "client",
            &server.url("/"),
            "--timeout",
            "1",
            "--send",
            "frames-next",
        ],
        b"",
    );
    assert_failure(&out, &["timed out", "waiting for a message"]);
}

#[test]
fn proxy_with_and_without_valid_credentials() {
    let proxy = Tinyproxy::start(Some(("cliuser", "clipass")), &[]);
    let server = ws_server();
    let address = proxy.address();
    let ok = client(
        &server.url("/"),
        &[
            "--proxy",
            &address,
            "--proxy-auth",
            "cliuser:clipass",
            "--send",
            "tunnelled",
        ],
        b"",
    );
    assert!(ok.status.success(), "stderr {}", ok.stderr);
    assert_eq!(ok.stdout, "tunnelled\n");
    let wrong = client(
        &server.url("/"),
        &[
            "--proxy",
            &address,
            "--proxy-auth",
            "cliuser:nope",
            "--send",
            "x",
        ],
        b"",
    );
    assert_failure(&wrong, &["proxy", "authentication failed", "--proxy-auth"]);
    let missing = client(&server.url("/"), &["--proxy", &address, "--send", "x"], b"");
    assert_failure(&missing, &["407", "authentication required"]);
}

#[test]
fn proxy_not_running() {
    let port = closed_port();
    let out = client(
        "ws://127.0.0.1:1/",
        &["--proxy", &format!("127.0.0.1:{port}"), "--send", "x"],
        b"",
    );
    assert_failure(&out, &["connection refused by proxy"]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["client", "http://127.0.0.1/", "--send", "x"],
        vec![
            "client",
            "ws://127.0.0.1:1/",
            "--header",
            "no colon here",
            "--send",
            "x",
        ],
        vec![
            "client",
            "ws://127.0.0.1:1/",
            "--timeout",
            "0",
            "--send",
            "x",
        ],
        vec![
            "client",
            "ws://127.0.0.1:1/",
            "--proxy",
            "127.0.0.1:1",
            "--proxy-auth",
            "nocolon",
        ],
    ] {
        let out = run_wssd(&args, b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: stderr {}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("wssd client: "),
            "{args:?}: {}",
            out.stderr
        );
    }
}
