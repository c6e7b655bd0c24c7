//! Rooms across wssd instances through a real Redis, the status listener
//! (/status, /metrics, POST /publish) and Redis faults (issue 13).
//! Each test starts its own `redis-server` on a free loopback port and
//! its own wssd instances, and reaps them all, on failure too.

use std::collections::HashMap;

use crate::redis::{client, config, free_port, http, next_text, prom_parse, Instance, Redis};
use crate::support::{self as common, wait_for};
use tungstenite::Message;

const LOBBY: &str = "/chat/lobby";

/// Two instances of 2 workers on one Redis, 10 clients in `lobby` (5 on
/// each), 3 of them publishing 200 messages: every client gets all 600
/// exactly once and each publisher's messages in order; a client in
/// another room gets none; /status and /metrics agree with the traffic.
#[test]
fn a_room_spans_two_instances_exactly_once_in_order() {
    let redis = Redis::start(free_port());
    let a = Instance::start(&config(2, Some(&redis.url()), "a", None, ""));
    let b = Instance::start(&config(2, Some(&redis.url()), "b", None, ""));
    a.wait_cluster(true);
    b.wait_cluster(true);

    let mut clients: Vec<_> = (0..10)
        .map(|i| client(&if i < 5 { &a } else { &b }.url(LOBBY)))
        .collect();
    let mut other = client(&b.url("/chat/other"));
    wait_for("11 connections counted", || {
        let open = |i: &Instance| i.status()["totals"]["connections"].as_u64();
        (open(&a) == Some(5) && open(&b) == Some(6)).then_some(())
    });

    // Publishers: clients 0 and 1 (instance a) and 5 (instance b).
    let publishers = [0usize, 1, 5];
    let mut handles = Vec::new();
    for &p in &publishers {
        let mut ws = std::mem::replace(&mut clients[p], client(&a.url("/chat/spare")));
        handles.push(std::thread::spawn(move || {
            for i in 0..200 {
                ws.send(Message::text(format!("p{p}-{i}"))).expect("send");
            }
            ws
        }));
    }
    for (h, &p) in handles.into_iter().zip(&publishers) {
        let spare = std::mem::replace(&mut clients[p], h.join().expect("publisher"));
        drop(spare);
    }

    for (n, ws) in clients.iter_mut().enumerate() {
        let mut next: HashMap<String, usize> = HashMap::new();
        for _ in 0..600 {
            let text = next_text(ws);
            let (who, i) = text.split_once('-').expect("p<k>-<i>");
            let i: usize = i.parse().expect("number");
            let expected = next.entry(who.to_string()).or_insert(0);
            assert_eq!(
                i, *expected,
                "client {n}: {who}'s messages out of order or repeated"
            );
            *expected += 1;
        }
        for p in publishers {
            assert_eq!(
                next.get(&format!("p{p}")),
                Some(&200),
                "client {n} from p{p}"
            );
        }
    }

    // Nothing more is on its way: a fence published now is each client's
    // very next message (no duplicate came in between).
    let fence = r#"{"path": "/chat/lobby", "message": "fence"}"#;
    let (code, body) = http(a.status, "POST", "/publish", &[], fence);
    assert_eq!(code, 202, "{body}");
    for ws in &mut clients {
        assert_eq!(next_text(ws), "fence");
    }
    let (code, _) = http(
        b.status,
        "POST",
        "/publish",
        &[],
        r#"{"path": "/chat/other", "message": "other-fence"}"#,
    );
    assert_eq!(code, 202);
    assert_eq!(
        next_text(&mut other),
        "other-fence",
        "the other room received lobby traffic"
    );

    // The figures agree with what happened (the spare connections made
    // while swapping publishers into threads are closed by now).
    wait_for("spare connections closed", || {
        (a.status()["totals"]["connections"] == 5).then_some(())
    });
    // B's "other-fence" reaches A's cluster helper (and is counted there)
    // with nobody on A to show it: wait for the count, not a client.
    wait_for("each instance counted the other's last message", || {
        (a.status()["cluster"]["received"] == 201 && b.status()["cluster"]["received"] == 401)
            .then_some(())
    });
    let (sa, sb) = (a.status(), b.status());
    assert_eq!(sa["totals"]["connections"], 5, "{sa}");
    assert_eq!(sb["totals"]["connections"], 6, "{sb}");
    assert_eq!(sa["totals"]["messages_in"], 400, "{sa}");
    assert_eq!(sb["totals"]["messages_in"], 200, "{sb}");
    assert_eq!(sa["totals"]["messages_out"], 5 * 600 + 5, "{sa}");
    assert_eq!(sb["totals"]["messages_out"], 5 * 600 + 5 + 1, "{sb}");
    assert_eq!(sa["cluster"]["published"], 401, "{sa}");
    assert_eq!(sb["cluster"]["received"], 401, "{sb}");
    assert_eq!(sb["cluster"]["published"], 201, "{sb}");
    assert_eq!(sa["cluster"]["received"], 201, "{sa}");
    assert_eq!(sa["cluster"]["dropped"], 0);
    assert_eq!(sa["workers"].as_array().map(Vec::len), Some(2));
    assert_eq!(sa["generation"], 1);
    assert_eq!(sa["version"], env!("CARGO_PKG_VERSION"));

    // /metrics, read by prometheus_client's parser, says the same.
    let (code, text) = http(a.status, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    let file = a.daemon.dir.write("metrics.txt", &text);
    let parsed: serde_json::Value =
        serde_json::from_str(&prom_parse(file.to_str().unwrap())).expect("parser output");
    let sum = |family: &str, sample: &str| parsed[family]["sums"][sample].as_f64();
    assert_eq!(parsed["wssd_connections"]["type"], "gauge");
    assert_eq!(sum("wssd_connections", "wssd_connections"), Some(5.0));
    assert_eq!(parsed["wssd_messages_received"]["type"], "counter");
    assert_eq!(
        sum("wssd_messages_received", "wssd_messages_received_total"),
        Some(400.0)
    );
    assert_eq!(
        sum("wssd_messages_sent", "wssd_messages_sent_total"),
        Some(3005.0)
    );
    assert_eq!(
        sum("wssd_cluster_published", "wssd_cluster_published_total"),
        Some(401.0)
    );
    assert_eq!(
        sum("wssd_cluster_connected", "wssd_cluster_connected"),
        Some(1.0)
    );
}

/// A backlog for Redis goes out pipelined: while Redis holds back writes
/// (`CLIENT PAUSE WRITE` blocks PUBLISH), 200 broadcasts on instance a
/// queue in its cluster helper; once Redis resumes they reach the client
/// on b exactly once and in order, and Redis read them in a few reads
/// (`total_reads_processed`), not one round trip per message.
/// Instance `a` (from `a_config`) and `b` on `redis`, each with one
/// client in the lobby, both counted: (a, b, a's client, b's client).
fn sender_on_a_receiver_on_b(
    redis: &Redis,
    a_config: &str,
) -> (Instance, Instance, common::Ws, common::Ws) {
    let a = Instance::start(a_config);
    let b = Instance::start(&config(1, Some(&redis.url()), "b", None, ""));
    a.wait_cluster(true);
    b.wait_cluster(true);
    let sender = client(&a.url(LOBBY));
    let receiver = client(&b.url(LOBBY));
    wait_for("2 connections counted", || {
        let open = |i: &Instance| i.status()["totals"]["connections"].as_u64();
        (open(&a) == Some(1) && open(&b) == Some(1)).then_some(())
    });
    (a, b, sender, receiver)
}

/// A control connection to `redis`: runs one command, returns its
/// answer as text, panics (naming the command) on an error.
fn control(redis: &Redis) -> impl FnMut(&[&str]) -> String {
    let mut ctl = ::redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("a control connection to Redis");
    move |args: &[&str]| {
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut ctl)
            .unwrap_or_else(|e| panic!("Redis {args:?}: {e}"))
    }
}

#[test]
fn a_backlog_for_redis_goes_out_pipelined_exactly_once_in_order() {
    const N: usize = 200;
    let redis = Redis::start(free_port());
    let a_config = config(1, Some(&redis.url()), "a", None, "");
    let (a, b, mut sender, mut receiver) = sender_on_a_receiver_on_b(&redis, &a_config);
    let mut query = control(&redis);
    let reads = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_reads_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("INFO stats has total_reads_processed")
    };
    query(&["CLIENT", "PAUSE", "600000", "WRITE"]);
    for i in 0..N {
        sender.send(Message::text(format!("m{i}"))).expect("send");
    }
    // Local delivery does not wait for Redis; each message is on its way
    // to a's helper once the sender has it back.
    for i in 0..N {
        assert_eq!(next_text(&mut sender), format!("m{i}"));
    }
    let before = reads(query(&["INFO", "stats"]));
    query(&["CLIENT", "UNPAUSE"]);
    for i in 0..N {
        assert_eq!(next_text(&mut receiver), format!("m{i}"), "on b");
    }
    let after = reads(query(&["INFO", "stats"]));
    assert!(
        after - before < 50,
        "Redis needed {} reads for {N} queued PUBLISH commands: not pipelined",
        after - before
    );
    // Nothing more is on its way: a fence is b's very next message.
    let fence = r#"{"path": "/chat/lobby", "message": "fence"}"#;
    let (code, body) = http(a.status, "POST", "/publish", &[], fence);
    assert_eq!(code, 202, "{body}");
    assert_eq!(next_text(&mut receiver), "fence");
    // The helpers count after handing a message on: wait for the counts.
    wait_for("a counted every publish and b every receipt", || {
        (a.status()["cluster"]["published"] == N + 1 && b.status()["cluster"]["received"] == N + 1)
            .then_some(())
    });
    assert_eq!(a.status()["cluster"]["dropped"], 0);
}

/// While Redis holds back writes, what waits in a's helper is bounded by
/// `max_pending`: the oldest broadcasts are dropped and counted, the
/// newest kept; once Redis resumes, b gets what was kept, each once, in
/// order, ending with the last, and published + dropped account for
/// every broadcast.
#[test]
fn a_stalled_redis_drops_the_oldest_over_max_pending() {
    const N: usize = 100;
    let redis = Redis::start(free_port());
    let small = config(1, Some(&redis.url()), "a", None, "")
        .replace("[cluster]\n", "[cluster]\nmax_pending = 2048\n");
    let (a, _b, mut sender, mut receiver) = sender_on_a_receiver_on_b(&redis, &small);
    let mut query = control(&redis);
    query(&["CLIENT", "PAUSE", "600000", "WRITE"]);
    // About 140 bytes each on the channel: 2 KiB hold some 14 of 100.
    let text = |i: usize| format!("m{i:03}-{}", "x".repeat(100));
    for i in 0..N {
        sender.send(Message::text(text(i))).expect("send");
    }
    for i in 0..N {
        assert_eq!(next_text(&mut sender), text(i));
    }
    wait_for("a's helper to drop the oldest", || {
        (a.status()["cluster"]["dropped"].as_u64() > Some(0)).then_some(())
    });
    query(&["CLIENT", "UNPAUSE"]);
    let mut got = Vec::new();
    while got.last() != Some(&(N - 1)) {
        let m = next_text(&mut receiver);
        let i: usize = m[1..4].parse().expect("m<i>-");
        assert_eq!(m, text(i));
        assert!(
            got.last() < Some(&i),
            "out of order or twice: {i} after {got:?}"
        );
        got.push(i);
    }
    assert!(got.len() < N / 2, "nothing was dropped: {got:?}");
    // What was in flight when Redis paused (the first round: what had
    // reached the helper when it first wrote to Redis, the oldest of it
    // possibly dropped already), then the newest, kept: at most two runs
    // without gaps, the second ending with the last.
    let k = (1..got.len())
        .find(|&j| got[j] != got[j - 1] + 1)
        .unwrap_or(0);
    assert_eq!(
        &got[k..],
        &(got[k]..N).collect::<Vec<_>>()[..],
        "{got:?} {}",
        a.status()["cluster"]
    );
    // Nothing more is on its way: a fence is b's very next message.
    let fence = r#"{"path": "/chat/lobby", "message": "fence"}"#;
    let (code, body) = http(a.status, "POST", "/publish", &[], fence);
    assert_eq!(code, 202, "{body}");
    assert_eq!(next_text(&mut receiver), "fence");
    wait_for("a's counts to add up", || {
        let c = &a.status()["cluster"];
        let (published, dropped) = (c["published"].as_u64()?, c["dropped"].as_u64()?);
        (published == got.len() as u64 + 1 && published - 1 + dropped == N as u64).then_some(())
    });
}

/// Broadcasts larger than the sockets' buffers cross instances whole: the
/// helpers' non-blocking connections write and parse them over many
/// reads and writes (and the link to b's master backs up), in order,
/// binary kept binary, between small ones.
#[test]
fn large_broadcasts_cross_instances_whole_and_in_order() {
    let redis = Redis::start(free_port());
    let a = Instance::start(&config(1, Some(&redis.url()), "a", None, ""));
    let b = Instance::start(&config(1, Some(&redis.url()), "b", None, ""));
    a.wait_cluster(true);
    b.wait_cluster(true);
    let mut sender = client(&a.url(LOBBY));
    let mut receiver = client(&b.url(LOBBY));
    wait_for("2 connections counted", || {
        let open = |i: &Instance| i.status()["totals"]["connections"].as_u64();
        (open(&a) == Some(1) && open(&b) == Some(1)).then_some(())
    });
    let big = |k: u8| -> Vec<u8> { (0..6 << 20).map(|i: u32| (i % 251) as u8 ^ k).collect() };
    let next_binary = |ws: &mut common::Ws| loop {
        match ws.read().expect("read within the deadline") {
            Message::Binary(b) => break b,
            Message::Text(t) => panic!("{t} before a big message"),
            _ => continue,
        }
    };
    // The sender reads its own copies back as it goes (the broadcast
    // includes it), so that a's worker does not hold its reads back.
    for k in 0..3u8 {
        sender.send(Message::binary(big(k))).expect("send");
        assert!(next_binary(&mut sender)[..] == big(k)[..]);
        sender
            .send(Message::text(format!("small-{k}")))
            .expect("send");
        assert_eq!(next_text(&mut sender), format!("small-{k}"));
    }
    for k in 0..3u8 {
        let m = next_binary(&mut receiver);
        assert!(
            m[..] == big(k)[..],
            "big message {k} differs ({} bytes)",
            m.len()
        );
        assert_eq!(next_text(&mut receiver), format!("small-{k}"));
    }
    wait_for("b counted 6 receipts", || {
        (b.status()["cluster"]["received"] == 6).then_some(())
    });
}

/// Redis killed mid-run: each instance's local delivery goes on without
/// a gap, the daemons keep running, the state change is logged once,
/// and after Redis returns on the same port cross-instance delivery
/// resumes.
#[test]
fn local_delivery_survives_redis_and_sharing_resumes() {
    let mut redis = Redis::start(free_port());
    let port = redis.port;
    let mut a = Instance::start(&config(2, Some(&redis.url()), "a", None, ""));
    let mut b = Instance::start(&config(2, Some(&redis.url()), "b", None, ""));
    a.wait_cluster(true);
    b.wait_cluster(true);
    let (mut a1, mut a2) = (client(&a.url(LOBBY)), client(&a.url(LOBBY)));
    let (mut b1, mut b2) = (client(&b.url(LOBBY)), client(&b.url(LOBBY)));
    wait_for("4 connections", || {
        let open = |i: &Instance| i.status()["totals"]["connections"].as_u64();
        (open(&a) == Some(2) && open(&b) == Some(2)).then_some(())
    });
    a1.send(Message::text("before")).unwrap();
    for ws in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert_eq!(next_text(ws), "before");
    }

    redis.kill();
    a.wait_cluster(false);
    b.wait_cluster(false);
    // Local delivery, in order, without a gap, on both instances.
    for i in 0..50 {
        a1.send(Message::text(format!("a-{i}"))).unwrap();
        b1.send(Message::text(format!("b-{i}"))).unwrap();
    }
    for i in 0..50 {
        assert_eq!(next_text(&mut a2), format!("a-{i}"));
        assert_eq!(next_text(&mut b2), format!("b-{i}"));
    }
    a.assert_running();
    b.assert_running();

    let _redis = Redis::start(port);
    a.wait_cluster(true);
    b.wait_cluster(true);
    // Messages sent while Redis was away are not promised (they may
    // arrive late or not at all): read past them to the first new one.
    a1.send(Message::text("after")).unwrap();
    for ws in [&mut b1, &mut b2] {
        wait_for("cross-instance delivery after Redis returned", || {
            (next_text(ws) == "after").then_some(())
        });
    }
    a.assert_running();
    b.assert_running();
    // One warning per state change, not one per message or attempt.
    let lost = "cluster: Redis at";
    assert_eq!(
        a.daemon.log_count(lost),
        1,
        "Redis loss logged more than once"
    );
    assert_eq!(a.daemon.log_count("cluster: connected to Redis"), 2);
}

/// POST /publish reaches a room's clients on both instances once each,
/// answers with the number of local receivers (3 clients spread over a's
/// two workers; 0 for a room nobody on the instance is in), keeps the
/// binary type, and refuses a bad body (400), a missing or wrong token
/// (401) and an oversized message (413); the status listener refuses
/// WebSocket upgrades.
#[test]
fn publish_api_reaches_both_instances_and_refuses_bad_requests() {
    let redis = Redis::start(free_port());
    // At most 2 connections per worker: 3 clients are spread over both.
    let limits = "max_message_size = \"4KiB\"\nmax_connections_per_worker = 2";
    let a = Instance::start(&config(2, Some(&redis.url()), "a", Some("s3cret"), limits));
    let b = Instance::start(&config(2, Some(&redis.url()), "b", Some("s3cret"), limits));
    a.wait_cluster(true);
    b.wait_cluster(true);
    let mut on_a: Vec<_> = (0..3).map(|_| client(&a.url(LOBBY))).collect();
    let mut on_b = client(&b.url(LOBBY));
    let mut elsewhere = client(&b.url("/chat/other"));
    wait_for("5 connections", || {
        let open = |i: &Instance| i.status()["totals"]["connections"].as_u64();
        (open(&a) == Some(3) && open(&b) == Some(2)).then_some(())
    });
    assert_eq!(per_worker_connections(&a), [1, 2], "a's clients not spread");
    let auth = [("Authorization", "Bearer s3cret")];
    let post = |body: &str| http(a.status, "POST", "/publish", &auth, body);
    let reply = |body: &str| -> serde_json::Value {
        let (code, text) = post(body);
        assert_eq!(code, 202, "{body}: {text}");
        serde_json::from_str(&text).expect("a JSON answer")
    };

    let r = reply(r#"{"path": "/chat/lobby", "message": "hello"}"#);
    assert_eq!(r["receivers"], 3, "{r}");
    assert_eq!(r["workers"], 2, "{r}");
    assert_eq!(r["complete"], true, "{r}");
    assert_eq!(r["cluster"], true, "{r}");
    // "aGk=" is "hi": binary stays binary; as the next message it also
    // proves "hello" came once.
    let r = reply(r#"{"path": "/chat/lobby", "binary_base64": "aGk=", "scope": "room"}"#);
    assert_eq!(r["receivers"], 3, "{r}");
    for ws in on_a.iter_mut().chain([&mut on_b]) {
        assert_eq!(next_text(ws), "hello");
        assert_eq!(next_text(ws), "bin:hi");
    }
    // Nobody on a is in "other" (its client is on b): 0 local receivers,
    // yet it reaches b through Redis.
    let r = reply(r#"{"path": "/chat/other", "message": "other"}"#);
    assert_eq!(
        (r["receivers"].as_u64(), r["complete"].as_bool()),
        (Some(0), Some(true)),
        "{r}"
    );
    assert_eq!(
        next_text(&mut elsewhere),
        "other",
        "the other room got lobby messages"
    );
    let r = reply(r#"{"path": "/chat/nobody", "message": "void"}"#);
    assert_eq!(
        (r["receivers"].as_u64(), r["complete"].as_bool()),
        (Some(0), Some(true)),
        "{r}"
    );

    for (body, why) in [
        ("{not json", "malformed JSON"),
        (r#"{"path": "/chat/lobby"}"#, "no message"),
        (r#"{"path": "/nowhere", "message": "x"}"#, "no route"),
        (
            r#"{"path": "/chat/lobby", "message": "x", "scope": "planet"}"#,
            "bad scope",
        ),
        (
            r#"{"path": "/chat/lobby", "binary_base64": "%%%"}"#,
            "bad base64",
        ),
    ] {
        let (code, reason) = post(body);
        assert_eq!(code, 400, "{why}: {reason}");
        assert!(!reason.trim().is_empty(), "{why}: a 400 says why");
    }
    let big = format!(
        r#"{{"path": "/chat/lobby", "message": "{}"}}"#,
        "x".repeat(5000)
    );
    assert_eq!(post(&big).0, 413);
    let ok = r#"{"path": "/chat/lobby", "message": "x"}"#;
    assert_eq!(http(a.status, "POST", "/publish", &[], ok).0, 401);
    let wrong = [("Authorization", "Bearer nope")];
    assert_eq!(http(a.status, "POST", "/publish", &wrong, ok).0, 401);
    // GET needs no token; unknown pages and methods are refused.
    assert_eq!(http(a.status, "GET", "/nothing", &[], "").0, 404);
    assert_eq!(http(a.status, "DELETE", "/status", &[], "").0, 405);

    // WebSocket upgrades are refused, to our client and to Python's.
    let url = format!("ws://{}/status", a.status);
    assert!(common::try_connect(&url).is_err(), "upgrade accepted");
    let out = common::wsprobe(&["status", &url]);
    assert!(out.contains("status 400"), "python websockets: {out}");
    // Garbage does not disturb the master.
    let junk = common::raw_exchange(a.status, b"\x16\x03\x01 not http\r\n\r\n");
    assert!(junk.starts_with("HTTP/1.1 400"), "{junk}");
    assert_eq!(a.status()["totals"]["connections"], 3);
    // Nothing was delivered twice: a last message, published on b (one
    // local receiver there), is the next one each lobby client reads.
    let (code, text) = http(
        b.status,
        "POST",
        "/publish",
        &auth,
        r#"{"path": "/chat/lobby", "message": "end"}"#,
    );
    assert_eq!(code, 202, "{text}");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["receivers"], 1, "{r}");
    for ws in on_a.iter_mut().chain([&mut on_b]) {
        assert_eq!(next_text(ws), "end");
    }
}

/// The open connections of each of `i`'s workers, fewest first.
fn per_worker_connections(i: &Instance) -> Vec<u64> {
    let mut n: Vec<u64> = i.status()["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["connections"].as_u64())
        .collect();
    n.sort_unstable();
    n
}

/// A publish never leaves its HTTP client hanging: with a worker stopped
/// (SIGSTOP) it is answered at the deadline with the other worker's
/// count and `"complete": false`; the stopped worker's late count is
/// ignored once it runs again; a worker killed while a publish waits for
/// it does not hold the answer either.
#[test]
fn publish_answers_without_a_stopped_or_dead_worker() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let limits = "max_connections_per_worker = 2";
    let a = Instance::start(&config(2, None, "a", None, limits));
    let _clients: Vec<_> = (0..3).map(|_| client(&a.url(LOBBY))).collect();
    wait_for("3 connections", || {
        (a.status()["totals"]["connections"] == 3).then_some(())
    });
    // The worker with 2 of the 3 clients is the one stopped.
    let s = a.status();
    let pid = s["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .find(|w| w["connections"] == 2)
        .and_then(|w| w["pid"].as_i64())
        .map(|p| Pid::from_raw(p as i32))
        .expect("a worker with 2 of the 3 clients");
    let post = move || {
        let (code, text) = http(
            a.status,
            "POST",
            "/publish",
            &[],
            r#"{"path": "/chat/lobby", "message": "m"}"#,
        );
        assert_eq!(code, 202, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };

    kill(pid, Signal::SIGSTOP).unwrap();
    let r = post();
    kill(pid, Signal::SIGCONT).unwrap();
    assert_eq!(r["receivers"], 1, "{r}");
    assert_eq!(
        (r["workers"].as_u64(), r["complete"].as_bool()),
        (Some(1), Some(false)),
        "{r}"
    );
    assert_eq!(r["cluster"], false, "{r}");
    // Running again: its late count for the old request changes nothing.
    let r = post();
    assert_eq!(
        (r["receivers"].as_u64(), r["complete"].as_bool()),
        (Some(3), Some(true)),
        "{r}"
    );

    kill(pid, Signal::SIGSTOP).unwrap();
    let waiting = std::thread::spawn(post);
    // The third publish: waiting for the stopped worker when it dies.
    a.daemon.wait_log_contains("publish 3 waits for 2 workers");
    kill(pid, Signal::SIGKILL).unwrap();
    let r = waiting.join().expect("publish answered");
    assert_eq!(
        (r["receivers"].as_u64(), r["complete"].as_bool()),
        (Some(1), Some(false)),
        "{r}"
    );
    a.daemon
        .wait_log_contains(&format!("pid {pid} exited: killed by SIGKILL"));
}

/// Redis absent at start: the daemons serve locally and say so once;
/// when Redis comes they connect. A SIGHUP that changes `[cluster]`
/// (here the channel prefix, joining b to a's rooms) replaces b's helper.
#[test]
fn redis_absent_at_start_then_sighup_changes_the_cluster() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let with_prefix = |id: &str, prefix: &str| {
        config(2, Some(&url), id, None, "").replace(
            "[cluster]\n",
            &format!("[cluster]\nchannel_prefix = \"{prefix}\"\n"),
        )
    };
    let mut a = Instance::start(&with_prefix("a", "one"));
    let mut b = Instance::start(&with_prefix("b", "two"));
    let (mut a1, mut a2) = (client(&a.url(LOBBY)), client(&a.url(LOBBY)));
    let mut b1 = client(&b.url(LOBBY));
    a1.send(Message::text("local")).unwrap();
    assert_eq!(next_text(&mut a2), "local");
    a.daemon.wait_log_contains("cluster: Redis at");
    assert_eq!(a.status()["cluster"]["connected"], false);
    a.assert_running();

    let _redis = Redis::start(port);
    a.wait_cluster(true);
    b.wait_cluster(true);
    assert_eq!(
        a.daemon.log_count("cluster: Redis at"),
        1,
        "logged per attempt"
    );

    // A reload that leaves [cluster] alone keeps a's helper (and its
    // connections); the final check below goes through it.
    a.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    a.daemon.wait_log_contains("reloaded");
    a.daemon.wait_log_contains("worker 1 pid");
    assert_eq!(
        a.daemon.log_count("cluster helper pid"),
        1,
        "helper replaced"
    );
    assert_eq!(a.status()["generation"], 2);
    a.wait_cluster(true);

    b.daemon.rewrite_config(&with_prefix("b", "one"));
    b.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    b.daemon
        .wait_log_contains("[cluster] changed: replacing the cluster helper");
    b.daemon.wait_log_contains("channel one:broadcast");
    b.wait_cluster(true);
    // Now a's room reaches b: send until b1 sees it (b's new helper may
    // subscribe a moment after the reload is logged).
    let mut n = 0;
    wait_for("a's broadcasts on b after the reload", || {
        n += 1;
        a1.send(Message::text(format!("joined-{n}"))).unwrap();
        let got = next_text(&mut b1);
        got.starts_with("joined-").then_some(())
    });
    a.assert_running();
    assert_eq!(
        a.daemon.log_count("cluster helper pid"),
        1,
        "a's helper was replaced"
    );
    b.assert_running();
}

/// One instance, no Redis: a refused handshake is counted by status, a
/// killed worker's replacement takes its slot and counts a restart, and
/// /status answers 503 while draining.
#[test]
fn status_counts_refusals_and_restarts_and_reports_draining() {
    let mut a = Instance::start(&config(2, None, "a", None, ""));
    let reply = common::raw_exchange(
        a.daemon.addr,
        common::upgrade_request("/nowhere", "").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    wait_for("a 404 counted", || {
        let s = a.status();
        let n: u64 = s["workers"]
            .as_array()?
            .iter()
            .filter_map(|w| w["handshake_failures"]["404"].as_u64())
            .sum();
        (n == 1).then_some(())
    });
    // A protocol error (an unmasked frame) ends a connection through the
    // failure path: the gauge comes back to 0.
    let mut bad = common::upgrade_request(LOBBY, "").into_bytes();
    bad.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    let reply = common::raw_exchange(a.daemon.addr, &bad);
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    wait_for("the failed connection uncounted", || {
        let s = a.status();
        (s["totals"]["connections"] == 0 && s["totals"]["accepted_total"] == 2).then_some(())
    });
    let s = a.status();
    assert_eq!(s["cluster"]["enabled"], false);
    let victim = s["workers"][0]["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = wait_for("the replacement in slot 0", || {
        let s = a.status();
        let w = &s["workers"][0];
        (w["restarts"] == 1 && w["alive"] == true && w["pid"] != victim).then_some(s)
    });
    assert_eq!(s["workers"].as_array().map(Vec::len), Some(2), "{s}");

    // A client keeps the drain going while we look.
    let _held = client(&a.url(LOBBY));
    wait_for("1 connection", || {
        (a.status()["totals"]["connections"] == 1).then_some(())
    });
    a.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    wait_for("503 while draining", || {
        let (code, body) = http(a.status, "GET", "/status", &[], "");
        (code == 503 && body.contains("\"draining\"")).then_some(())
    });
    a.assert_running();
}
