//! permessage-deflate (RFC 7692) against the real daemon: Python
//! `websockets` (which negotiates compression by default) in both
//! directions, raw frames for the failures of issue 12 point 4, the
//! decompression bomb, and our client and `wssd client` against Python's
//! server.

use crate::support::frames::{raw_frame, Frame, FrameStream, BINARY, CLOSE, CONT, PING, TEXT};
use crate::support::tools::python_command;
use crate::support::*;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use wssd::client::{Client, ClientConfig, ClientError, CloseCode, Message};

/// RSV1 in `raw_frame`'s `rsv` argument and in [`Frame::rsv`].
const RSV1: u8 = 4;
/// The offer browsers send.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
/// The Python peer (tests/support/deflate_peer.py).
const PEER: &str = "support/deflate_peer.py";

fn deflate_config(extra: &str) -> String {
    config(
        &format!("workers = 1\ncompression = \"deflate\"\n{extra}"),
        ECHO,
    )
}

/// Runs the Python peer to completion; its stdout (fails the test with
/// its stderr if it fails).
fn peer(args: &[&str]) -> String {
    let out = run(python_command(PEER, args), b"");
    assert!(
        out.status.success(),
        "deflate_peer.py {args:?} failed: {}\n{}",
        out.status,
        out.stderr
    );
    out.stdout
}

/// `data` as an RFC 7692 message payload made of one stored (not
/// compressed) deflate block, the 4-byte sync tail removed: valid
/// permessage-deflate that needs no compressor in the test.
fn stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 0xffff);
    let len = data.len() as u16;
    let mut out = vec![0x00];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.push(0x00); // the empty stored block whose `00 00 ff ff` is cut
    out
}

/// A raw connection to `/echo` that sent `headers` with its upgrade
/// request, past the 101.
struct Raw {
    frames: FrameStream,
    /// The 101 response head.
    head: String,
}

impl Raw {
    fn open(addr: SocketAddr, headers: &str) -> Raw {
        let mut frames = FrameStream::new(TcpStream::connect(addr).expect("connect"));
        frames.send(upgrade_request("/echo", headers).as_bytes());
        let head = frames.read_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Raw { frames, head }
    }

    /// Sends bytes; the server may have hung up already (a failed
    /// connection), which the close code read next shows.
    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let _ = self.frames.tcp.write_all(bytes);
    }

    /// The next frame; `None` at EOF.
    fn next(&mut self) -> Option<Frame> {
        self.frames.next()
    }

    /// Skips to the server's close frame and returns its code.
    fn close_code(&mut self) -> u16 {
        loop {
            match self.next() {
                Some(f) if f.opcode == CLOSE => {
                    return f.close_code().expect("close frame without a code")
                }
                Some(_) => continue,
                None => panic!("the server hung up without a close frame"),
            }
        }
    }
}

/// An unmasked, final server frame.
fn server(rsv: u8, opcode: u8, payload: &[u8]) -> Frame {
    Frame {
        fin: true,
        rsv,
        opcode,
        masked: false,
        payload: payload.to_vec(),
    }
}

#[test]
fn python_websockets_client_negotiates_and_round_trips_compressed_messages() {
    let d = Daemon::start(&deflate_config(""));
    let out = peer(&["client", &d.url("/echo"), "300000"]);
    assert_eq!(out.trim(), "extensions permessage-deflate");
}

#[test]
fn python_websockets_round_trips_with_contexts_kept_both_ways() {
    // Each connection then keeps a C zlib compressor and inflater across
    // messages (text, then binary, on one connection): at 15 bits, and at
    // uWebSockets' dedicated settings (9-bit windows, memLevel 1).
    for extra in [
        "",
        "server_max_window_bits = 9\nclient_max_window_bits = 9\nmemory_level = 1\n",
    ] {
        let d = Daemon::start(&deflate_config(&format!(
            "[compression]\nserver_context_takeover = true\nclient_context_takeover = true\n{extra}"
        )));
        // The answer lets both sides keep their context.
        let raw = Raw::open(d.addr, OFFER);
        let head = raw.head.to_ascii_lowercase();
        assert!(
            head.contains("sec-websocket-extensions: permessage-deflate")
                && !head.contains("context_takeover"),
            "{}",
            raw.head
        );
        drop(raw);
        for size in ["300000", "5000"] {
            let out = peer(&["client", &d.url("/echo"), size]);
            assert_eq!(out.trim(), "extensions permessage-deflate", "{extra}");
        }
    }
}

#[test]
fn a_route_with_compression_off_declines_the_offer() {
    let d = Daemon::start(&config("workers = 1\n", ECHO));
    let out = peer(&["client", &d.url("/echo"), "5000"]);
    assert_eq!(out.trim(), "extensions none");
    let raw = Raw::open(d.addr, OFFER);
    assert!(
        !raw.head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{}",
        raw.head
    );
}

#[test]
fn the_answer_names_what_was_accepted_and_compressed_messages_echo_compressed() {
    let d = Daemon::start(&deflate_config(""));
    let mut raw = Raw::open(d.addr, OFFER);
    let head = raw.head.to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
    // A compressed text message is inflated for the handler, and the echo
    // (above the threshold) goes back compressed, RSV1 on its frame.
    let text = "compress me ".repeat(100);
    raw.send(&raw_frame(true, RSV1, TEXT, true, &stored(text.as_bytes())));
    let echo = raw.next().expect("an echo");
    assert_eq!(
        (echo.fin, echo.rsv, echo.opcode),
        (true, RSV1, TEXT),
        "FIN, RSV1, text"
    );
    assert!(
        echo.payload.len() < text.len() / 4,
        "{} bytes",
        echo.payload.len()
    );
    // Below the threshold: sent as it is.
    raw.send(&raw_frame(true, 0, TEXT, true, b"tiny"));
    assert_eq!(raw.next(), Some(server(0, TEXT, b"tiny")));
}

#[test]
fn rsv1_without_negotiation_is_a_protocol_error() {
    let d = Daemon::start(&config("workers = 1\n", ECHO));
    let mut raw = Raw::open(d.addr, "");
    raw.send(&raw_frame(true, RSV1, TEXT, true, &stored(b"hello")));
    assert_eq!(raw.close_code(), 1002);
}

#[test]
fn rsv1_on_a_control_frame_is_a_protocol_error() {
    let d = Daemon::start(&deflate_config(""));
    let mut raw = Raw::open(d.addr, OFFER);
    raw.send(&raw_frame(true, RSV1, PING, true, b"x"));
    assert_eq!(raw.close_code(), 1002);
}

#[test]
fn rsv1_on_a_continuation_frame_is_a_protocol_error() {
    let d = Daemon::start(&deflate_config(""));
    let mut raw = Raw::open(d.addr, OFFER);
    let body = stored(b"two frames");
    raw.send(&raw_frame(false, RSV1, TEXT, true, &body[..4]));
    raw.send(&raw_frame(true, RSV1, CONT, true, &body[4..]));
    assert_eq!(raw.close_code(), 1002);
}

#[test]
fn corrupt_deflate_data_fails_text_with_1007_and_binary_with_1002() {
    let d = Daemon::start(&deflate_config(""));
    // BTYPE 11 is reserved: not deflate.
    let garbage = [0xff, 0xff, 0xff, 0xff, 0x00, 0x01];
    let mut raw = Raw::open(d.addr, OFFER);
    raw.send(&raw_frame(true, RSV1, TEXT, true, &garbage));
    assert_eq!(raw.close_code(), 1007);
    let mut raw = Raw::open(d.addr, OFFER);
    raw.send(&raw_frame(true, RSV1, BINARY, true, &garbage));
    assert_eq!(raw.close_code(), 1002);
}

#[test]
fn inflated_text_that_is_not_utf8_fails_with_1007() {
    let d = Daemon::start(&deflate_config(""));
    let mut raw = Raw::open(d.addr, OFFER);
    raw.send(&raw_frame(true, RSV1, TEXT, true, &stored(b"ok \xff\xfe")));
    assert_eq!(raw.close_code(), 1007);
}

/// `VmRSS` or `VmHWM` of `pid`, in KiB.
fn vm_kib(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .trim()
                .strip_suffix("kB")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// 200 MB of zeros as one RFC 7692 payload (~200 KB), made by Python's
/// zlib (C zlib, independent of ours).
fn bomb() -> Vec<u8> {
    let dir = TempDir::new();
    let path = dir.path().join("bomb");
    let mut cmd = Command::new(python_bin());
    cmd.arg("-c")
        .arg(
            "import sys, zlib\n\
             c = zlib.compressobj(9, zlib.DEFLATED, -15)\n\
             z = c.compress(bytes(200 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)\n\
             assert z.endswith(b'\\x00\\x00\\xff\\xff')\n\
             open(sys.argv[1], 'wb').write(z[:-4])",
        )
        .arg(&path);
    let out = run(cmd, b"");
    assert!(out.status.success(), "{}", out.stderr);
    std::fs::read(&path).expect("the bomb")
}

#[test]
fn a_decompression_bomb_gets_1009_and_the_worker_stays_small() {
    let bomb = bomb();
    assert!(bomb.len() < 400_000, "{} bytes", bomb.len());
    let d = Daemon::start(&deflate_config("max_message_size = \"1MiB\"\n"));
    let worker = d.wait_workers(1)[0];
    // Warm up: one ordinary compressed echo, so the baseline includes the
    // inflater and buffers any message uses.
    let mut raw = Raw::open(d.addr, OFFER);
    let text = "warm ".repeat(1000);
    raw.send(&raw_frame(true, RSV1, TEXT, true, &stored(text.as_bytes())));
    assert!(raw.next().is_some());
    let baseline = vm_kib(worker, "VmRSS");
    let mut raw = Raw::open(d.addr, OFFER);
    raw.send(&raw_frame(true, RSV1, BINARY, true, &bomb));
    assert_eq!(raw.close_code(), 1009);
    let peak = vm_kib(worker, "VmHWM");
    // The compressed frame itself (~200 KB) and at most 1 MiB of output
    // are allowed; 200 MB is not.
    assert!(
        peak < baseline + 6 * 1024,
        "worker peak RSS {peak} KiB against a baseline of {baseline} KiB"
    );
    // The worker still serves.
    let mut raw = Raw::open(d.addr, OFFER);
    raw.send(&raw_frame(true, 0, TEXT, true, b"still here"));
    assert_eq!(raw.next(), Some(server(0, TEXT, b"still here")));
}

/// A compressible text of `size` bytes.
fn json_text(size: usize) -> String {
    let unit = r#"{"user":"alice","room":"lobby","text":"hello, world","n":12345},"#;
    unit.repeat(size / unit.len() + 1)[..size].to_string()
}

#[test]
fn our_client_negotiates_with_python_websockets_server_and_round_trips() {
    let py = PyProc::spawn(PEER, &["server"]);
    let port = py.line();
    let port = port.strip_prefix("PORT ").expect("PORT line");
    let url = format!("ws://127.0.0.1:{port}/");
    let mut c = Client::connect(&url, &ClientConfig::default()).expect("connect");
    assert!(
        c.compressed(),
        "the client offers permessage-deflate by default"
    );
    assert_eq!(py.line(), "extensions permessage-deflate");
    for size in [10, 5_000, 300_000] {
        let text = json_text(size);
        let got = c.send_receive(Message::text(text.clone())).expect("echo");
        assert_eq!(got, Message::text(text));
        let data: Vec<u8> = json_text(size).into_bytes().into_iter().rev().collect();
        let got = c.send_receive(Message::binary(data.clone())).expect("echo");
        assert_eq!(got, Message::binary(data));
    }
    c.close(CloseCode::NORMAL, "").expect("close");
    // Opted out: no offer, no compression.
    let cfg = ClientConfig::default().with_compression(false);
    let mut c = Client::connect(&url, &cfg).expect("connect");
    assert!(!c.compressed());
    assert_eq!(py.line(), "extensions none");
    let got = c.send_receive_text("plain").expect("echo");
    assert_eq!(got, Message::text("plain"));
}

#[test]
fn our_client_and_daemon_round_trip_compressed_and_handlers_see_plain_messages() {
    let d = Daemon::start(&deflate_config(""));
    let mut c = Client::connect(&d.url("/echo"), &ClientConfig::default()).expect("connect");
    assert!(c.compressed());
    let text = json_text(200_000);
    let got = c.send_receive(Message::text(text.clone())).expect("echo");
    assert_eq!(got, Message::text(text));
}

#[test]
fn our_client_inflates_within_max_message_size() {
    let d = Daemon::start(&deflate_config("max_message_size = \"4MiB\"\n"));
    let cfg = ClientConfig {
        max_message_size: Some(100_000),
        ..ClientConfig::default()
    };
    let mut c = Client::connect(&d.url("/echo"), &cfg).expect("connect");
    // 1 MB of text compresses to a few KB: the frame is small, the
    // message is not.
    c.send(Message::text(json_text(1 << 20))).expect("send");
    match c.receive() {
        Err(ClientError::MessageTooLarge { max, .. }) => assert_eq!(max, 100_000),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
}

/// The compression counters of `/status` (totals of all workers).
fn compression_totals(status: SocketAddr) -> serde_json::Value {
    let (code, body) = http(status, "GET", "/status", &[], "");
    assert_eq!(code, 200, "GET /status: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
    v["totals"]["compression"].clone()
}

#[test]
fn a_broadcast_is_compressed_once_for_all_its_receivers() {
    let routes = "[[routes]]\npath = \"/chat/{room}\"\nhandler = \"broadcast\"\n";
    let text = config("workers = 1\ncompression = \"deflate\"\n", routes)
        + "\n[status]\nlisten = \"127.0.0.1:0\"\n";
    let d = Daemon::start(&text);
    let status: SocketAddr = d.wait_log("the status listener", |l| {
        l.split("status listener on ")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
    });
    let url = d.url("/chat/lobby");
    // Four receivers with the same negotiated window (the sender among
    // them: the broadcast handler echoes to its sender), and one that
    // did not offer the extension.
    let mut clients: Vec<Client> = (0..4)
        .map(|_| Client::connect(&url, &ClientConfig::default()).expect("connect"))
        .collect();
    assert!(clients.iter().all(Client::compressed));
    let plain_config = ClientConfig::default().with_compression(false);
    let mut plain = Client::connect(&url, &plain_config).expect("connect");
    assert!(!plain.compressed());
    assert_eq!(compression_totals(status)["messages"], 0);
    let text = json_text(4000);
    clients[0].send_text(&text).expect("send");
    for c in clients.iter_mut().chain([&mut plain]) {
        assert_eq!(c.receive().expect("broadcast"), Message::text(text.clone()));
    }
    // The worker counts before it writes the frames, so the counters are
    // final once every receiver has the message.
    let totals = compression_totals(status);
    assert_eq!(
        totals["messages"], 1,
        "one compression for four receivers: {totals}"
    );
    assert_eq!(totals["bytes_in"], 4000, "{totals}");
    let out = totals["bytes_out"].as_u64().expect("bytes_out");
    assert!(out > 0 && out < 4000, "{totals}");
}

#[test]
fn wssd_client_offers_compression_unless_told_not_to() {
    let py = PyProc::spawn(PEER, &["server"]);
    let port = py.line();
    let url = format!(
        "ws://127.0.0.1:{}/",
        port.strip_prefix("PORT ").expect("PORT")
    );
    for (flags, seen) in [
        (&[][..], "extensions permessage-deflate"),
        (&["--no-compression"][..], "extensions none"),
    ] {
        let mut cmd = Command::new(wssd_bin());
        cmd.arg("client")
            .arg(&url)
            .args(flags)
            .args(["--send", &json_text(1000)]);
        let out = run(cmd, b"");
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(out.stdout.trim(), json_text(1000));
        assert_eq!(py.line(), seen, "wssd client {flags:?}");
    }
}
