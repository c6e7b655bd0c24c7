//! `wssd bench` in echo mode against an independent echo server (Python
//! `websockets`): counts are consistent, a corrupted echo is caught, and
//! setup failures exit with status 2. Speed is never asserted.

mod bench_support;

use bench_support::{closed_port, per_connection_sum, run_bench, BenchRun, Json, JsonExt, Server};

/// Asserts the run finished cleanly with consistent echo counts.
fn assert_clean_echo(run: &BenchRun, connections: u64) -> Json {
    let j = run.clean_json();
    assert_eq!(j["connected"].u64(), connections);
    let messages = j["messages"].u64();
    assert!(messages > 0, "no message completed: {j:?}");
    assert_eq!(
        messages,
        per_connection_sum(&j),
        "messages != sum over connections"
    );
    assert_eq!(j["per_connection"].array().len() as u64, connections);
    assert!(
        j["per_connection_min"].u64() > 0,
        "a connection did nothing: {j:?}"
    );
    // Every request was answered: nothing lost in flight.
    assert_eq!(j["messages_sent"].u64(), messages);
    assert_eq!(j["latency_us"]["count"].u64(), messages);
    assert!(j["messages_per_s"].f64() > 0.0);
    j
}

#[test]
fn echo_counts_are_consistent() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "4", "-d", "2", "--json"]);
    let j = assert_clean_echo(&run, 4);
    assert_eq!(j["mode"], "echo");
    let lat = &j["latency_us"];
    assert!(lat["p50"].f64() <= lat["p99"].f64());
    assert!(lat["p99"].f64() <= lat["max"].f64());
}

#[test]
fn echo_with_window_text_and_threads() {
    let server = Server::start(&[]);
    let url = server.url("/path?q=1");
    let run = run_bench(&[
        &url, "-c", "5", "-d", "1", "-w", "4", "--text", "-t", "2", "-s", "300", "--json",
    ]);
    let j = assert_clean_echo(&run, 5);
    assert_eq!(j["threads"].u64(), 2);
    assert_eq!(j["window"].u64(), 4);
}

#[test]
fn echo_large_messages() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "2", "-d", "1", "-s", "100000", "--json"]);
    assert_clean_echo(&run, 2);
}

#[test]
fn corrupted_echo_is_counted_and_fails_the_run() {
    let server = Server::start(&["--corrupt", "10"]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "4", "-d", "2", "--json"]);
    assert_eq!(
        run.status, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let j = run.json();
    assert!(j["errors"].u64() >= 1, "{j:?}");
    assert!(j["error_counts"]["mismatch"].u64() >= 1, "{j:?}");
    assert!(run.stderr.contains("differs"), "stderr: {}", run.stderr);
    // The other messages still count, and the failed one is not counted.
    let messages = j["messages"].u64();
    assert!(messages >= 9, "{j:?}");
    assert_eq!(messages, per_connection_sum(&j));
    assert_eq!(j["messages_sent"].u64(), messages + 1);
}

#[test]
fn corrupted_echo_fails_the_table_output_too() {
    let server = Server::start(&["--corrupt", "3"]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "1", "-d", "1"]);
    assert_eq!(
        run.status, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains("mismatch"), "{}", run.stdout);
}

#[test]
fn unreachable_server_exits_2() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let run = run_bench(&[&url, "-c", "2", "-d", "1", "--json"]);
    assert_eq!(run.status, 2, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("cannot connect"),
        "stderr: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn bad_arguments_exit_2() {
    let run = run_bench(&["http://127.0.0.1:1/", "-d", "1"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("ws://"), "stderr: {}", run.stderr);
    let run = run_bench(&["ws://127.0.0.1:1/", "-c", "0"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("--connections"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn unexpected_close_is_counted() {
    let server = Server::start(&["--close-after", "20"]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "3", "-d", "1", "--json"]);
    assert_eq!(
        run.status, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let j = run.json();
    assert!(j["error_counts"]["closed"].u64() >= 1, "{j:?}");
    assert!(run.stderr.contains("1011"), "stderr: {}", run.stderr);
    assert_eq!(j["messages"].u64(), per_connection_sum(&j));
}

#[test]
fn fragmented_echoes_are_reassembled() {
    let server = Server::start(&["--fragment"]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "2", "-d", "1", "-s", "1000", "--text", "--json"]);
    assert_clean_echo(&run, 2);
}

#[test]
fn refused_upgrade_exits_2() {
    let server = Server::start(&["--reject"]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "2", "-d", "1", "--json"]);
    assert_eq!(
        run.status, 2,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stderr.contains("403"), "stderr: {}", run.stderr);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn source_addresses_are_spread() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "4", "-d", "1", "--source-addrs", "2", "--json"]);
    let j = assert_clean_echo(&run, 4);
    let notes = format!("{:?}", j["notes"]);
    assert!(notes.contains("127.0.0.2 to 127.0.0.3"), "{notes}");
}

#[test]
fn too_many_connections_for_the_fd_limit_exit_2() {
    // No limit allows two billion descriptors; the check comes before any
    // connection is made.
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let run = run_bench(&[&url, "-c", "2000000000", "-d", "1", "-m", "idle"]);
    assert_eq!(run.status, 2, "stderr: {}", run.stderr);
    assert!(run.stderr.contains("open files"), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("several"), "stderr: {}", run.stderr);
}
