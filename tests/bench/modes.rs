//! `wssd bench` handshake, idle and broadcast modes against the Python
//! test server: counts are consistent and errors are zero.

use crate::{echo_server, float, num, per_connection, per_connection_sum, run_bench};

#[test]
fn handshake_mode_counts_handshakes() {
    let server = echo_server(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "3", "-d", "1", "-m", "handshake", "--json"]);
    let j = run.clean_json();
    let handshakes = num(&j, "/handshakes");
    assert!(handshakes > 0, "{j}");
    assert_eq!(handshakes, per_connection_sum(&j));
    // One verified echo per handshake cycle.
    assert_eq!(num(&j, "/messages"), handshakes);
    assert_eq!(num(&j, "/latency_us/count"), handshakes);
}

#[test]
fn idle_mode_holds_connections_and_reports_memory() {
    let server = echo_server(&[]);
    let url = server.url("/");
    let pid = server.pid().to_string();
    let run = run_bench(&[
        &url, "-c", "50", "-d", "1", "-m", "idle", "--pid", &pid, "--json",
    ]);
    let j = run.clean_json();
    assert_eq!(num(&j, "/connected"), 50);
    assert_eq!(num(&j, "/messages"), 50);
    assert!(per_connection(&j).iter().all(|n| *n == 1), "{j}");
    assert!(num(&j, "/memory/processes") >= 1, "{j}");
    assert!(num(&j, "/memory/holding_rss_kib") > 0, "{j}");
    assert!(num(&j, "/memory/holding_pss_kib") > 0, "{j}");
    float(&j, "/memory/rss_per_connection_bytes");
}

#[test]
fn broadcast_mode_counts_deliveries() {
    let server = echo_server(&["--broadcast"]);
    let url = server.url("/room-a");
    let run = run_bench(&[&url, "-c", "5", "-d", "1", "-m", "broadcast", "--json"]);
    let j = run.clean_json();
    let sent = num(&j, "/broadcast/messages_sent");
    assert!(sent > 0, "{j}");
    assert_eq!(num(&j, "/broadcast/receivers"), 5);
    assert_eq!(num(&j, "/broadcast/deliveries"), sent * 5);
    assert_eq!(num(&j, "/broadcast/expected_deliveries"), sent * 5);
    assert_eq!(num(&j, "/broadcast/complete_messages"), sent);
    assert_eq!(per_connection_sum(&j), sent * 5);
    assert!(per_connection(&j).iter().all(|n| *n == sent), "{j}");
}

#[test]
fn broadcast_detects_an_echo_server() {
    // Against a plain echo server, only the sender gets each message back:
    // the other receivers miss them, and that must be reported.
    let server = echo_server(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "3", "-d", "1", "-m", "broadcast", "--json"]);
    assert_eq!(
        run.status, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let j = run.json();
    assert!(num(&j, "/errors") >= 1, "{j}");
}

#[test]
fn broadcast_with_excluded_sender() {
    let server = echo_server(&["--broadcast", "--exclude-sender"]);
    let url = server.url("/room-b");
    let run = run_bench(&[
        &url,
        "-c",
        "4",
        "-d",
        "1",
        "-m",
        "broadcast",
        "--exclude-sender",
        "-t",
        "2",
        "--json",
    ]);
    let j = run.clean_json();
    let sent = num(&j, "/broadcast/messages_sent");
    assert!(sent > 0, "{j}");
    assert_eq!(num(&j, "/broadcast/receivers"), 3);
    assert_eq!(num(&j, "/broadcast/deliveries"), sent * 3);
    assert_eq!(per_connection(&j), vec![0, sent, sent, sent]);
}

#[test]
fn idle_connections_answer_pings() {
    // The server echoes a connection's message only once that connection
    // answered a ping (and waits for the pong as long as it takes): every
    // idle connection gets its one echo only if the bench answers pings.
    let server = echo_server(&["--ping-first"]);
    let url = server.url("/");
    let run = run_bench(&[
        &url,
        "-c",
        "10",
        "-d",
        "1",
        "-m",
        "idle",
        "--connect-timeout",
        "60",
        "--json",
    ]);
    let j = run.clean_json();
    assert_eq!(num(&j, "/connected"), 10);
    assert_eq!(num(&j, "/messages"), 10, "{j}");
}
