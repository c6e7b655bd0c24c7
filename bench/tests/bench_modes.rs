//! `wssd bench` handshake, idle and broadcast modes against the Python
//! test server: counts are consistent and errors are zero.

mod bench_support;

use bench_support::{per_connection_sum, run_bench, JsonExt, Server};

#[test]
fn handshake_mode_counts_handshakes() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "3", "-d", "1", "-m", "handshake", "--json"]);
    let j = run.clean_json();
    let handshakes = j["handshakes"].u64();
    assert!(handshakes > 0, "{j:?}");
    assert_eq!(handshakes, per_connection_sum(&j));
    // One verified echo per handshake cycle.
    assert_eq!(j["messages"].u64(), handshakes);
    assert_eq!(j["latency_us"]["count"].u64(), handshakes);
}

#[test]
fn idle_mode_holds_connections_and_reports_memory() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let pid = server.pid().to_string();
    let run = run_bench(&[
        &url, "-c", "50", "-d", "1", "-m", "idle", "--pid", &pid, "--json",
    ]);
    let j = run.clean_json();
    assert_eq!(j["connected"].u64(), 50);
    assert_eq!(j["messages"].u64(), 50);
    assert!(
        j["per_connection"].array().iter().all(|n| n.u64() == 1),
        "{j:?}"
    );
    let mem = &j["memory"];
    assert!(mem["processes"].u64() >= 1, "{mem:?}");
    assert!(mem["holding_rss_kib"].u64() > 0, "{mem:?}");
    assert!(mem["holding_pss_kib"].u64() > 0, "{mem:?}");
    mem["rss_per_connection_bytes"].f64();
}

#[test]
fn broadcast_mode_counts_deliveries() {
    let server = Server::start(&["--broadcast"]);
    let url = server.url("/room-a");
    let run = run_bench(&[&url, "-c", "5", "-d", "1", "-m", "broadcast", "--json"]);
    let j = run.clean_json();
    let b = &j["broadcast"];
    let sent = b["messages_sent"].u64();
    assert!(sent > 0, "{j:?}");
    assert_eq!(b["receivers"].u64(), 5);
    assert_eq!(b["deliveries"].u64(), sent * 5);
    assert_eq!(b["expected_deliveries"].u64(), sent * 5);
    assert_eq!(b["complete_messages"].u64(), sent);
    assert_eq!(per_connection_sum(&j), sent * 5);
    assert!(j["per_connection"].array().iter().all(|n| n.u64() == sent));
}

#[test]
fn broadcast_detects_an_echo_server() {
    // Against a plain echo server, only the sender gets each message back:
    // the other receivers miss them, and that must be reported.
    let server = Server::start(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, "-c", "3", "-d", "1", "-m", "broadcast", "--json"]);
    assert_eq!(
        run.status, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let j = run.json();
    assert!(j["errors"].u64() >= 1, "{j:?}");
}

#[test]
fn broadcast_with_excluded_sender() {
    let server = Server::start(&["--broadcast", "--exclude-sender"]);
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
    let b = &j["broadcast"];
    let sent = b["messages_sent"].u64();
    assert!(sent > 0, "{j:?}");
    assert_eq!(b["receivers"].u64(), 3);
    assert_eq!(b["deliveries"].u64(), sent * 3);
    let per_conn: Vec<u64> = j["per_connection"]
        .array()
        .iter()
        .map(JsonExt::u64)
        .collect();
    assert_eq!(per_conn, vec![0, sent, sent, sent]);
}

#[test]
fn idle_connections_answer_pings() {
    // The server echoes a connection's message only once that connection
    // answered a ping (and waits for the pong as long as it takes): every
    // idle connection gets its one echo only if the bench answers pings.
    let server = Server::start(&["--ping-first"]);
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
    assert_eq!(j["connected"].u64(), 10);
    assert_eq!(j["messages"].u64(), 10, "{j:?}");
}

#[test]
fn broadcast_over_two_urls_spreads_receivers() {
    // The same room reached through two URLs of one server: every
    // receiver gets everything, counted per URL.
    let server = Server::start(&["--broadcast"]);
    let a = server.url("/room-c");
    let b = format!("ws://localhost:{}/room-c", server.port);
    let run = run_bench(&[&a, &b, "-c", "5", "-d", "1", "-m", "broadcast", "--json"]);
    let j = run.clean_json();
    let bc = &j["broadcast"];
    let sent = bc["messages_sent"].u64();
    assert!(sent > 0, "{j:?}");
    let per_url = bc["per_url"].array();
    assert_eq!(per_url.len(), 2, "{j:?}");
    // Connections 0, 2, 4 on the first URL, 1 and 3 on the second.
    assert_eq!(per_url[0]["receivers"].u64(), 3);
    assert_eq!(per_url[1]["receivers"].u64(), 2);
    assert_eq!(per_url[0]["deliveries"].u64(), sent * 3);
    assert_eq!(per_url[1]["deliveries"].u64(), sent * 2);
    assert_eq!(per_url[1]["expected_deliveries"].u64(), sent * 2);
}

#[test]
fn broadcast_over_unconnected_servers_reports_missing_deliveries() {
    // Two independent servers (like two instances without a cluster):
    // receivers on the second get nothing, and the report says so.
    let first = Server::start(&["--broadcast"]);
    let second = Server::start(&["--broadcast"]);
    let (a, b) = (first.url("/room-d"), second.url("/room-d"));
    let run = run_bench(&[&a, &b, "-c", "4", "-d", "1", "-m", "broadcast", "--json"]);
    assert_eq!(
        run.status, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let j = run.json();
    let bc = &j["broadcast"];
    let sent = bc["messages_sent"].u64();
    assert!(sent > 0, "{j:?}");
    let per_url = bc["per_url"].array();
    assert_eq!(per_url[0]["deliveries"].u64(), sent * 2, "{j:?}");
    assert_eq!(per_url[1]["deliveries"].u64(), 0, "{j:?}");
    assert_eq!(per_url[1]["expected_deliveries"].u64(), sent * 2, "{j:?}");
    assert_eq!(bc["complete_messages"].u64(), 0, "{j:?}");
    assert!(j["error_counts"]["timeout"].u64() >= 2, "{j:?}");
}

#[test]
fn several_urls_need_broadcast_mode() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let run = run_bench(&[&url, &url, "-c", "2", "-d", "1"]);
    assert_eq!(run.status, 2, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("several URLs"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn server_cpu_is_reported_per_cpu_pid() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let pid = server.pid().to_string();
    // i32::MAX is above Linux's pid range: a pid that cannot exist.
    let gone = i32::MAX.to_string();
    let run = run_bench(&[
        &url,
        "-c",
        "2",
        "-d",
        "1",
        "--json",
        "--cpu-pid",
        &pid,
        "--cpu-pid",
        &gone,
    ]);
    let j = run.clean_json();
    assert!(j["messages"].u64() > 0, "{j:?}");
    let cpu = &j["server_cpu_s"];
    // The Python server echoed for the whole window: it was on a CPU.
    let secs = cpu[pid.as_str()].f64();
    assert!(secs > 0.0, "{j:?}");
    // Within the window: at most its length per thread (the test server
    // runs one thread), with room for the window's rounding.
    assert!(secs <= j["elapsed_s"].f64() * 1.5, "{j:?}");
    assert!(cpu.get(gone.as_str()).is_none(), "{j:?}");
}

/// User + system CPU seconds of `pid` so far (`/proc/PID/stat`, ticks of
/// 1/100 s): taken independently of `wssd bench`'s own sampling.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server alive");
    let after = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[test]
fn server_cpu_leaves_out_the_connection_setup() {
    let server = Server::start(&[]);
    let url = server.url("/");
    let pid = server.pid();
    let before = cpu_seconds(pid);
    // Idle mode: 200 upgrades and first echoes before the window, then
    // the connections are only held, so the server works before the
    // window and hardly at all inside it.
    let run = run_bench(&[
        &url,
        "-c",
        "200",
        "-d",
        "1",
        "-m",
        "idle",
        "--json",
        "--cpu-pid",
        &pid.to_string(),
    ]);
    let whole_run = cpu_seconds(pid) - before;
    let j = run.clean_json();
    assert_eq!(j["connected"].u64(), 200, "{j:?}");
    let window = j["server_cpu_s"][pid.to_string().as_str()].f64();
    assert!(whole_run > 0.0, "the setup cost the server no CPU? {j:?}");
    assert!(
        window < whole_run / 2.0,
        "window {window} s of {whole_run} s for the whole run: the setup was counted"
    );
}
