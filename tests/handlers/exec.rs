//! `exec` routes over the real daemon: a program per connection, its
//! lines and bytes as messages, its environment, its exit as the close
//! code, its end when the client leaves, reaping, backpressure and
//! `max_processes`. Python `websockets` is the independent client.

use crate::support::tools::python_command;
use crate::support::*;
use std::io::Read;
use tungstenite::Message;

/// An exec route as TOML; `extra` adds keys to the route.
fn route(path: &str, command: &[&str], extra: &str) -> String {
    let argv: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[routes]]\npath = \"{path}\"\nhandler = \"exec\"\ncommand = [{}]\n{extra}\n",
        argv.join(", ")
    )
}

/// Runs tests/support/exec_probe.py (Python `websockets`) to completion
/// and returns its stdout; fails the test with its stderr if it fails.
fn exec_probe(args: &[&str]) -> String {
    let out = run(python_command("support/exec_probe.py", args), b"");
    assert!(
        out.status.success(),
        "exec_probe.py {args:?} failed: {}\n{}",
        out.status,
        out.stderr
    );
    out.stdout
}

/// Reads text messages until the close frame; returns them and the code.
fn collect(ws: &mut Ws) -> (Vec<String>, Option<u16>, String) {
    let mut texts = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => texts.push(t.to_string()),
            Ok(Message::Close(f)) => {
                let _ = ws.flush();
                let reason = f.as_ref().map(|f| f.reason.to_string()).unwrap_or_default();
                return (texts, f.map(|f| u16::from(f.code)), reason);
            }
            Ok(_) => {}
            Err(e) => panic!("expected messages and a close frame, got error {e}"),
        }
    }
}

/// The next message, which must be text.
fn next_text(ws: &mut Ws) -> String {
    match ws.read().expect("read") {
        Message::Text(t) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[test]
fn cat_echoes_lines_for_both_clients() {
    let d = Daemon::start(&config("", &route("/cat", &["cat"], "")));
    let mut ws = connect(&d.url("/cat"));
    echo(&mut ws, Message::text("hello"));
    echo(&mut ws, Message::text("héllo wörld ✓"));
    // A message with a newline is written as it is: two lines back.
    ws.send(Message::text("one\ntwo\n")).unwrap();
    assert_eq!(next_text(&mut ws), "one");
    assert_eq!(next_text(&mut ws), "two");
    ws.close(None).unwrap();
    assert_eq!(exec_probe(&["lines", &d.url("/cat")]).trim(), "ok");
}

#[test]
fn binary_mode_passes_bytes() {
    let d = Daemon::start(&config("", &route("/bin", &["cat"], "mode = \"binary\"")));
    let mut ws = connect(&d.url("/bin"));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    ws.send(Message::binary(data.clone())).unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        match ws.read().expect("read") {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("expected binary, got {other:?}"),
        }
    }
    assert_eq!(got, data);
}

#[test]
fn environment_has_request_headers_params_and_query_only() {
    let routes = route("/env/{room}/{*rest}", &["env"], "env = { EXTRA = \"yes\" }")
        + &route("/fds", &["sh", "-c", "ls /proc/$$/fd"], "");
    let d = Daemon::start(&config("", &routes));
    let url = d.url("/env/lobby/a/b%20c?x=1&y=two");
    let req = tungstenite::http::Request::builder()
        .uri(&url)
        .header("Host", d.addr.to_string())
        .header("X-Test-Header", "hello there")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let tcp = std::net::TcpStream::connect(d.addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let (mut ws, _) = tungstenite::client(req, tcp).expect("handshake");
    let (lines, code, _) = collect(&mut ws);
    assert_eq!(code, Some(1000), "env exits 0: {lines:?}");
    let has = |l: &str| lines.iter().any(|x| x == l);
    for want in [
        "REMOTE_ADDR=127.0.0.1",
        "SERVER_NAME=127.0.0.1",
        &format!("SERVER_PORT={}", d.addr.port()),
        "SERVER_PROTOCOL=HTTP/1.1",
        "REQUEST_METHOD=GET",
        "REQUEST_URI=/env/lobby/a/b%20c?x=1&y=two",
        "QUERY_STRING=x=1&y=two",
        "SCRIPT_NAME=/env/lobby",
        "PATH_INFO=/a/b c",
        "HTTP_X_TEST_HEADER=hello there",
        "WSSD_PARAM_ROOM=lobby",
        "WSSD_PARAM_REST=a/b c",
        "EXTRA=yes",
    ] {
        assert!(has(want), "missing {want} in {lines:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("REMOTE_PORT=")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("SERVER_SOFTWARE=wssd/")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("PATH=")), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("HOME=")),
        "daemon env leaked: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("HTTPS=")), "{lines:?}");
    // No descriptor but stdin, stdout and stderr reaches the program.
    let (fds, code, _) = collect(&mut connect(&d.url("/fds")));
    assert_eq!(code, Some(1000));
    let mut fds: Vec<&str> = fds.iter().map(String::as_str).collect();
    fds.sort();
    assert_eq!(
        fds,
        vec!["0", "1", "2"],
        "descriptors leaked to the program"
    );
}

#[test]
fn exit_status_is_the_close_code() {
    let routes = route("/fail", &["sh", "-c", "echo bye; exit 3"], "")
        + &route("/ok", &["sh", "-c", "exit 0"], "")
        + &route("/crash", &["sh", "-c", "kill -SEGV $$"], "");
    let d = Daemon::start(&config("", &routes));
    let (lines, code, reason) = collect(&mut connect(&d.url("/fail")));
    assert_eq!(lines, vec!["bye"], "output before the exit is sent first");
    assert_eq!(code, Some(1011));
    assert!(reason.contains("status 3"), "{reason}");
    let (_, code, _) = collect(&mut connect(&d.url("/ok")));
    assert_eq!(code, Some(1000));
    let (_, code, reason) = collect(&mut connect(&d.url("/crash")));
    assert_eq!(code, Some(1011));
    assert!(reason.contains("SIGSEGV"), "{reason}");
    let out = exec_probe(&["collect", &d.url("/fail")]);
    assert!(
        out.contains("closed 1011 program exited with status 3"),
        "{out}"
    );
}

#[test]
fn a_missing_program_is_1011_and_a_log_line() {
    let routes = route("/missing", &["/nonexistent/program"], "") + ECHO;
    let d = Daemon::start(&config("", &routes));
    let (_, code, reason) = collect(&mut connect(&d.url("/missing")));
    assert_eq!(code, Some(1011));
    assert!(reason.contains("cannot start"), "{reason}");
    let line = d.wait_log_contains("route /missing: cannot start");
    assert!(line.contains("/nonexistent/program"), "{line}");
    echo(&mut connect(&d.url("/echo")), Message::text("still here"));
}

#[test]
fn stderr_goes_to_the_log_with_route_and_pid() {
    let d = Daemon::start(&config(
        "",
        &route(
            "/err",
            &["sh", "-c", "echo $$; echo oops on stderr >&2; sleep 1000"],
            "",
        ),
    ));
    let mut ws = connect(&d.url("/err"));
    let pid = next_text(&mut ws);
    d.wait_log_contains(&format!("route /err: pid {pid} stderr: oops on stderr"));
}

#[test]
fn a_line_over_max_message_size_is_1009() {
    let d = Daemon::start(&config(
        "",
        &route(
            "/long",
            &[
                "sh",
                "-c",
                "echo short; head -c 500 /dev/zero | tr '\\0' a; echo; sleep 1000",
            ],
            "max_message_size = 100\nkill_grace = \"100ms\"",
        ),
    ));
    let (lines, code, _) = collect(&mut connect(&d.url("/long")));
    assert_eq!(lines, vec!["short"]);
    assert_eq!(code, Some(1009));
}

#[test]
fn non_utf8_lines_are_binary_messages() {
    let d = Daemon::start(&config(
        "",
        &route("/latin", &["printf", "caf\\351\\nok\\n"], ""),
    ));
    let mut ws = connect(&d.url("/latin"));
    assert_eq!(ws.read().unwrap(), Message::binary(b"caf\xe9".to_vec()));
    assert_eq!(ws.read().unwrap(), Message::text("ok"));
}

/// Waits until `pid` is gone (exited and reaped).
fn wait_gone(pid: i32) {
    wait_for(&format!("pid {pid} to be gone"), || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn client_leaving_closes_stdin_then_terms_then_kills() {
    let routes = route(
        "/cat",
        &["sh", "-c", "echo $$; exec cat"],
        "kill_grace = \"1h\"",
    ) + &route(
        "/sleep",
        &["sh", "-c", "echo $$; exec sleep 1000"],
        "kill_grace = \"200ms\"",
    ) + &route(
        "/stubborn",
        &[
            "sh",
            "-c",
            "trap '' TERM; echo $$; while :; do sleep 1; done",
        ],
        "kill_grace = \"200ms\"",
    );
    let d = Daemon::start(&config("workers = 1", &routes));
    // cat ends on end-of-file, long before the one-hour grace.
    let mut ws = connect(&d.url("/cat"));
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    ws.close(None).unwrap();
    let _ = ws.read();
    wait_gone(pid);
    // sleep ignores stdin: SIGTERM after the grace.
    let mut ws = connect(&d.url("/sleep"));
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    drop(ws);
    wait_gone(pid);
    d.wait_log_contains(&format!("pid {pid} still running"));
    // This one ignores SIGTERM: SIGKILL after another grace.
    let mut ws = connect(&d.url("/stubborn"));
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    drop(ws);
    wait_gone(pid);
    d.wait_log_contains(&format!("pid {pid} survived SIGTERM; SIGKILL"));
}

#[test]
fn no_zombies_after_200_connections() {
    let d = Daemon::start(&config("workers = 1", &route("/cat", &["cat"], "")));
    let worker = d.wait_workers(1)[0];
    for i in 0..200 {
        let mut ws = connect(&d.url("/cat"));
        echo(&mut ws, Message::text(format!("round {i}")));
        if i % 2 == 0 {
            ws.close(None).unwrap();
            let _ = ws.read();
        }
    }
    wait_for("the worker to have no children left", || {
        children(worker).is_empty().then_some(())
    });
    assert_eq!(d.workers(), vec![worker], "the worker is the same process");
}

#[test]
fn programs_die_with_their_worker() {
    let d = Daemon::start(&config(
        "workers = 1",
        &route("/sleep", &["sh", "-c", "echo $$; exec sleep 1000"], ""),
    ));
    let worker = d.wait_workers(1)[0];
    let mut ws = connect(&d.url("/sleep"));
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(&format!("pid {pid} to die with its worker"), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists() || !alive(pid)).then_some(())
    });
}

#[test]
fn max_processes_reached_is_503() {
    let d = Daemon::start(&config(
        "workers = 1",
        &route("/one", &["cat"], "max_processes = 1"),
    ));
    let mut first = connect(&d.url("/one"));
    echo(&mut first, Message::text("running"));
    let reply = raw_exchange(d.addr, upgrade_request("/one", "").as_bytes());
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert_eq!(wsprobe(&["status", &d.url("/one")]).trim(), "status 503");
    first.close(None).unwrap();
    let _ = first.read();
    wait_for("a free process slot", || try_connect(&d.url("/one")).ok());
}

/// The worker's resident set size in bytes.
fn rss(pid: i32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn a_flood_to_a_client_that_does_not_read_stays_bounded() {
    let flood = route(
        "/flood",
        &[
            "sh",
            "-c",
            "echo $$; yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 1000000000",
        ],
        "kill_grace = \"200ms\"",
    );
    let routes = flood + &route("/cat", &["cat"], "");
    let d = Daemon::start(&config("workers = 1\nmax_send_buffer = \"1MiB\"", &routes));
    let worker = d.wait_workers(1)[0];
    let mut other = connect(&d.url("/cat"));
    echo(&mut other, Message::text("warm up"));
    let before = rss(worker);
    // A client that reads the first line (the shell's pid) and then
    // nothing: a small receive buffer, never drained.
    let tcp = std::net::TcpStream::connect(d.addr).unwrap();
    nix::sys::socket::setsockopt(&tcp, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let (mut flooded, _) = tungstenite::client(d.url("/flood"), tcp).expect("handshake");
    let pid: i32 = next_text(&mut flooded).parse().unwrap();
    // The pipeline fills the socket, the send queue and the pipe, then
    // blocks writing to the pipe the worker no longer reads.
    wait_for("the flooding program to block on its pipe", || {
        children(pid)
            .iter()
            .any(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "head")
                    && std::fs::read_to_string(format!("/proc/{c}/wchan"))
                        .is_ok_and(|w| w.contains("pipe_write") || w.contains("pipe_wait"))
            })
            .then_some(())
    });
    // While the program is blocked on its pipe, the worker serves the
    // other client and its memory stays within max_send_buffer + a few MiB.
    let mut peak = before;
    for i in 0..200 {
        echo(&mut other, Message::text(format!("still echoing {i}")));
        peak = peak.max(rss(worker));
    }
    let bound = before + (1 << 20) + (6 << 20);
    assert!(
        peak <= bound,
        "worker RSS grew from {before} to {peak} (bound {bound})"
    );
    assert!(
        alive(pid),
        "the flooding program is blocked, not finished or killed"
    );
    // The flooded client leaves: its program is ended.
    let mut raw = flooded.into_inner();
    drop(raw.read(&mut [0u8; 1]));
    drop(raw);
    wait_gone(pid);
}

/// The send and receive queues of the TCP socket from `local_port` to
/// `remote_port`, from /proc/net/tcp.
fn queues(local_port: u16, remote_port: u16) -> Option<(usize, usize)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
        if port(f.get(1)?)? != local_port || port(f.get(2)?)? != remote_port {
            return None;
        }
        let (tx, rx) = f.get(4)?.split_once(':')?;
        Some((
            usize::from_str_radix(tx, 16).ok()?,
            usize::from_str_radix(rx, 16).ok()?,
        ))
    })
}

#[test]
fn a_client_faster_than_its_program_is_not_read() {
    // A client that vanishes behind a zero window is never seen to go
    // (its FIN waits for window space): idle_timeout ends it. It runs from
    // the last read, that is from when the worker stopped reading: long
    // enough for a loaded machine to look at the queues first.
    let d = Daemon::start(&config(
        "workers = 1\nidle_timeout = \"10s\"",
        &route(
            "/deaf",
            &["sh", "-c", "echo $$; exec sleep 1000"],
            "kill_grace = \"100ms\"",
        ),
    ));
    let tcp = std::net::TcpStream::connect(d.addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let client_port = tcp.local_addr().unwrap().port();
    let control = tcp.try_clone().unwrap();
    let (mut ws, _) = tungstenite::client(d.url("/deaf"), tcp).expect("handshake");
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    // Up to 64 MiB for a program that never reads.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let sender = std::thread::spawn(move || {
        let chunk = "x".repeat(64 * 1024);
        for _ in 0..1024 {
            if ws.send(Message::text(chunk.clone())).is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
        let _ = ws.flush();
    });
    // Once both ends' queues are full, what the worker took off the
    // socket (sent, less what waits in the two queues) is the program's
    // pipe plus the stdin bound (256 KiB) plus one read: well under 2 MiB.
    // Taken only while the sender is blocked (`sent` the same before and
    // after reading the queues), so the count and the queues agree.
    let taken = wait_for("the worker to stop reading the client", || {
        let before = sent.load(std::sync::atomic::Ordering::SeqCst);
        let (_, server_rx) = queues(d.addr.port(), client_port)?;
        let (client_tx, _) = queues(client_port, d.addr.port())?;
        let after = sent.load(std::sync::atomic::Ordering::SeqCst);
        (server_rx > 64 * 1024 && client_tx > 64 * 1024 && before == after)
            .then(|| after.saturating_sub(server_rx + client_tx))
    });
    assert!(
        taken <= 2 << 20,
        "the worker took {taken} bytes off the socket for a program that reads nothing"
    );
    control.shutdown(std::net::Shutdown::Both).unwrap();
    sender.join().unwrap();
    wait_gone(pid);
}

/// Waits for worker `pid`'s own log line saying it is done: it ended by
/// itself once its connections and programs were gone, not killed by the
/// master at its deadline (which would end the programs too, through
/// `PR_SET_PDEATHSIG`, and hide a worker that never ended them).
fn wait_worker_done(d: &Daemon, pid: i32) {
    d.wait_log(&format!("worker pid {pid} done"), |l| {
        (l.contains(&format!("wssd[{pid} worker")) && l.contains(&format!("pid {pid} done")))
            .then_some(())
    });
}

/// Waits for the line of worker `pid` saying it stopped accepting after
/// a reload (SIGQUIT).
fn wait_retiring(d: &Daemon, pid: i32) {
    d.wait_log(&format!("worker pid {pid} retiring"), |l| {
        (l.contains(&format!("wssd[{pid} worker")) && l.contains("retiring")).then_some(())
    });
}

#[test]
fn drain_closes_exec_clients_with_1001_and_ends_their_programs() {
    let d = Daemon::start(&config(
        "workers = 1",
        &route(
            "/sleep",
            &["sh", "-c", "echo $$; exec sleep 1000"],
            "kill_grace = \"200ms\"",
        ),
    ));
    let mut d = d;
    let worker = d.wait_workers(1)[0];
    let mut ws = connect(&d.url("/sleep"));
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(read_close_code(&mut ws), Some(1001));
    // The worker ends the program (sleep ignores its stdin: SIGTERM after
    // kill_grace), then exits by itself.
    d.wait_log_contains(&format!("pid {pid} still running"));
    wait_gone(pid);
    wait_worker_done(&d, worker);
    assert_eq!(d.wait_exit(), Some(0));
}

#[test]
fn reload_keeps_old_programs_until_their_clients_leave() {
    let routes = route("/cat", &["sh", "-c", "echo $$; exec cat"], "");
    let d = Daemon::start(&config("workers = 1", &routes));
    let old_worker = d.wait_workers(1)[0];
    let mut ws = connect(&d.url("/cat"));
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    // The old worker has stopped accepting (a new one serves new
    // clients); it keeps this program, which still answers.
    wait_retiring(&d, old_worker);
    echo(&mut ws, Message::text("still served by the old generation"));
    assert!(alive(pid));
    let mut new = connect(&d.url("/cat"));
    let new_pid: i32 = next_text(&mut new).parse().unwrap();
    echo(&mut new, Message::text("served by the new generation"));
    echo(&mut ws, Message::text("the old one too"));
    // Its client leaves: the program ends, then the old worker.
    ws.close(None).unwrap();
    let _ = ws.read();
    wait_gone(pid);
    wait_worker_done(&d, old_worker);
    assert!(alive(new_pid));
}

#[test]
fn reload_ends_old_programs_once_drain_timeout_passes() {
    let routes = route(
        "/sleep",
        &["sh", "-c", "echo $$; exec sleep 1000"],
        "kill_grace = \"200ms\"",
    );
    let d = Daemon::start(
        &config("workers = 1", &routes).replace("drain_timeout = 10", "drain_timeout = \"1s\""),
    );
    let old_worker = d.wait_workers(1)[0];
    let mut ws = connect(&d.url("/sleep"));
    let pid: i32 = next_text(&mut ws).parse().unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_retiring(&d, old_worker);
    // Served until drain_timeout passes, then closed with 1001 (not 1011:
    // the program was not killed under it) and the program ended.
    assert_eq!(read_close_code(&mut ws), Some(1001));
    d.wait_log_contains(&format!("pid {pid} still running"));
    wait_gone(pid);
    wait_worker_done(&d, old_worker);
}

#[test]
fn the_selected_subprotocol_is_in_the_environment() {
    let d = Daemon::start(&config(
        "",
        &route(
            "/proto",
            &["sh", "-c", "echo \"proto=${WSSD_SUBPROTOCOL-unset}\""],
            "subprotocols = [\"chat.v2\", \"chat.v1\"]",
        ),
    ));
    let url = d.url("/proto");
    // Python websockets offers chat.v1 only: the route selects it.
    let out = exec_probe(&["collect", &url, "chat.v1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..2],
        ["subprotocol chat.v1", "proto=chat.v1"],
        "{out}"
    );
    assert!(lines[2].starts_with("closed 1000"), "{out}");
    // Both offered: the server's order wins.
    let out = exec_probe(&["collect", &url, "chat.v1", "chat.v2"]);
    assert!(out.contains("proto=chat.v2"), "{out}");
    // None that the route speaks: no subprotocol, no variable.
    let out = exec_probe(&["collect", &url, "other"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["subprotocol -", "proto=unset"], "{out}");
}
