//! `wssd bench --deflate` against independent servers that compress:
//! Python `websockets` (context takeover, 12-bit windows) and the
//! uWebSockets deflate peers (shared: no context takeover; dedicated:
//! context takeover, 15-bit windows). Every echo is checked byte for byte
//! after inflation; bytes on the wire must show the compression. The wssd
//! daemon is not needed (it does not compress yet).

mod bench_support;

use bench_support::{run_bench, BenchRun, Json, JsonExt, Server};

/// A clean compressed echo run: counts consistent, the answer reported,
/// and fewer bytes on the wire than message bytes both ways.
fn assert_compressed_echo(run: &BenchRun, connections: u64) -> Json {
    let j = run.clean_json();
    assert_eq!(j["connected"].u64(), connections, "{j:?}");
    let messages = j["messages"].u64();
    assert!(messages > 0, "{j:?}");
    assert_eq!(j["messages_sent"].u64(), messages, "{j:?}");
    let answer = j["deflate"]["answer"].as_str().unwrap_or_default();
    assert!(answer.starts_with("permessage-deflate"), "{j:?}");
    let wire = &j["wire"];
    let size = j["size"].u64();
    assert_eq!(wire["message_bytes_received"].u64(), messages * size);
    assert!(
        wire["received_bytes"].u64() < wire["message_bytes_received"].u64() / 2,
        "replies not compressed: {wire:?}"
    );
    assert!(
        wire["sent_bytes"].u64() < wire["message_bytes_sent"].u64() / 2,
        "requests not compressed: {wire:?}"
    );
    j
}

/// `--deflate` 16 KiB JSON text echo with a few connections.
fn json_echo(url: &str, extra: &[&str]) -> BenchRun {
    let mut args = vec![
        url,
        "--deflate",
        "--payload",
        "json",
        "--text",
        "-s",
        "16384",
        "-c",
        "3",
        "-d",
        "1",
        "--json",
    ];
    args.extend_from_slice(extra);
    run_bench(&args)
}

#[test]
fn deflate_echo_against_python_websockets() {
    let server = Server::start(&["--compression"]);
    let j = assert_compressed_echo(&json_echo(&server.url("/"), &["-w", "2"]), 3);
    let answer = j["deflate"]["answer"].as_str().unwrap_or_default();
    // websockets keeps its context and asks for 12-bit windows.
    assert!(!answer.contains("no_context_takeover"), "{answer}");
    assert!(answer.contains("client_max_window_bits=12"), "{answer}");
    // Binary pattern payloads, several in flight.
    let run = run_bench(&[
        &server.url("/"),
        "--deflate",
        "-s",
        "5000",
        "-c",
        "2",
        "-w",
        "4",
        "-d",
        "1",
        "--json",
    ]);
    assert_compressed_echo(&run, 2);
}

#[test]
fn deflate_fragmented_replies_are_inflated() {
    let server = Server::start(&["--compression", "--fragment"]);
    assert_compressed_echo(&json_echo(&server.url("/"), &[]), 3);
}

#[test]
fn deflate_corrupted_echo_is_caught_after_inflation() {
    let server = Server::start(&["--compression", "--corrupt", "4"]);
    let run = json_echo(&server.url("/"), &[]);
    assert_eq!(
        run.status, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let j = run.json();
    assert!(j["error_counts"]["mismatch"].u64() >= 1, "{j:?}");
}

#[test]
fn deflate_declined_by_the_server_is_a_setup_error() {
    let server = Server::start(&[]);
    let run = json_echo(&server.url("/"), &[]);
    assert_eq!(
        run.status, 2,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains("declined permessage-deflate"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn deflate_idle_connections_after_one_json_echo() {
    let server = Server::start(&["--compression"]);
    let pid = server.pid().to_string();
    let url = server.url("/");
    let run = run_bench(&[
        &url,
        "--deflate",
        "--payload",
        "json",
        "--text",
        "-s",
        "16384",
        "-c",
        "40",
        "-d",
        "1",
        "-m",
        "idle",
        "--pid",
        &pid,
        "--json",
    ]);
    let j = run.clean_json();
    assert_eq!(j["connected"].u64(), 40);
    assert_eq!(j["messages"].u64(), 40);
    assert!(j["memory"]["holding_rss_kib"].u64() > 0, "{j:?}");
}

#[test]
fn deflate_echo_against_uws_deflate_peers() {
    for (name, no_takeover) in [
        ("EchoServerDeflateShared", true),
        ("EchoServerDeflateDedicated", false),
    ] {
        let Some(server) = Server::start_uws(name) else {
            continue;
        };
        let j = assert_compressed_echo(&json_echo(&server.url("/"), &[]), 3);
        let answer = j["deflate"]["answer"].as_str().unwrap_or_default();
        assert_eq!(
            answer.contains("client_no_context_takeover; server_no_context_takeover")
                || answer.contains("server_no_context_takeover; client_no_context_takeover"),
            no_takeover,
            "{name}: {answer}"
        );
    }
}

#[test]
fn deflate_handshake_cycles_negotiate_every_time() {
    let server = Server::start(&["--compression"]);
    let url = server.url("/");
    let run = run_bench(&[
        &url,
        "--deflate",
        "--payload",
        "json",
        "--text",
        "-s",
        "2000",
        "-c",
        "2",
        "-d",
        "1",
        "-m",
        "handshake",
        "--json",
    ]);
    let j = run.clean_json();
    let handshakes = j["handshakes"].u64();
    assert!(handshakes > 0, "{j:?}");
    assert_eq!(j["messages"].u64(), handshakes, "{j:?}");
    assert!(
        j["wire"]["received_bytes"].u64() > 0 && j["deflate"]["answer"].is_string(),
        "{j:?}"
    );
}
