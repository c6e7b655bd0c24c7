//! permessage-deflate (RFC 7692) against the real daemon: Python
//! `websockets` (which negotiates compression by default) in both
//! directions, raw frames for the failures of issue 12 point 4, and the
//! decompression bomb.

mod common;
use common::frames::{raw_frame, BINARY, CLOSE, CONT, PING, TEXT};
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use wssd::client::{Client, ClientConfig, ClientError, CloseCode, Message};

/// RSV1 in `raw_frame`'s `rsv` argument.
const RSV1: u8 = 4;
/// The offer browsers send.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn deflate_config(extra: &str) -> String {
    config(
        &format!("workers = 1\ncompression = \"deflate\"\n{extra}"),
        ECHO,
    )
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

/// A raw connection that sent `headers` with its upgrade request.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// The 101 response head.
    head: String,
}

impl Raw {
    fn open(addr: SocketAddr, headers: &str) -> Raw {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        tcp.write_all(upgrade_request("/echo", headers).as_bytes())
            .unwrap();
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
            head: String::new(),
        };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill(), "the server closed during the handshake");
        };
        raw.head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        assert!(raw.head.starts_with("HTTP/1.1 101"), "{}", raw.head);
        raw.buf.drain(..end);
        raw
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.tcp.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read from the server: {e}"),
        }
    }

    /// Sends bytes; the server may have hung up already (a failed
    /// connection), which the close code read next shows.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.tcp.write_all(bytes);
    }

    /// The next frame: (first byte, payload); `None` at EOF.
    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n @ 0..=125 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let first = self.buf[0];
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((first, payload));
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Skips to the server's close frame and returns its code.
    fn close_code(&mut self) -> u16 {
        loop {
            match self.next() {
                Some((first, p)) if first & 0x0f == CLOSE => {
                    assert!(p.len() >= 2, "close frame without a code");
                    return u16::from_be_bytes([p[0], p[1]]);
                }
                Some(_) => continue,
                None => panic!("the server hung up without a close frame"),
            }
        }
    }
}

#[test]
fn python_websockets_client_negotiates_and_round_trips_compressed_messages() {
    let d = Daemon::start(&deflate_config(""));
    let out = python("deflate_peer.py", &["client", &d.url("/echo"), "300000"]);
    assert_eq!(out.trim(), "extensions permessage-deflate");
}

#[test]
fn a_route_with_compression_off_declines_the_offer() {
    let d = Daemon::start(&config("workers = 1\n", ECHO));
    let out = python("deflate_peer.py", &["client", &d.url("/echo"), "5000"]);
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
    let (first, payload) = raw.next().expect("an echo");
    assert_eq!(first, 0x80 | 0x40 | TEXT, "FIN, RSV1, text");
    assert!(payload.len() < text.len() / 4, "{} bytes", payload.len());
    // Below the threshold: sent as it is.
    raw.send(&raw_frame(true, 0, TEXT, true, b"tiny"));
    assert_eq!(raw.next(), Some((0x80 | TEXT, b"tiny".to_vec())));
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
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib\n\
             c = zlib.compressobj(9, zlib.DEFLATED, -15)\n\
             z = c.compress(bytes(200 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)\n\
             assert z.endswith(b'\\x00\\x00\\xff\\xff')\n\
             sys.stdout.buffer.write(z[:-4])",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
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
    assert_eq!(raw.next(), Some((0x80 | TEXT, b"still here".to_vec())));
}

/// A compressible text of `size` bytes.
fn json_text(size: usize) -> String {
    let unit = r#"{"user":"alice","room":"lobby","text":"hello, world","n":12345},"#;
    unit.repeat(size / unit.len() + 1)[..size].to_string()
}

#[test]
fn our_client_negotiates_with_python_websockets_server_and_round_trips() {
    let py = PyProc::spawn("deflate_peer.py", &["server"]);
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

#[test]
fn a_broadcast_is_compressed_once_for_all_its_receivers() {
    let routes = "[[routes]]\npath = \"/chat/{room}\"\nhandler = \"broadcast\"\n";
    let d = Daemon::start(&config("workers = 1\ncompression = \"deflate\"\n", routes));
    let url = d.url("/chat/lobby");
    let mut clients: Vec<Client> = (0..4)
        .map(|_| Client::connect(&url, &ClientConfig::default()).expect("connect"))
        .collect();
    assert!(clients.iter().all(Client::compressed));
    let text = json_text(4000);
    clients[0].send_text(&text).expect("send");
    for c in &mut clients {
        assert_eq!(c.receive().expect("broadcast"), Message::text(text.clone()));
    }
    // The worker says how many compressions served how many receivers
    // (the sender receives its own broadcast too).
    d.wait_log_contains("broadcast of 4000 bytes compressed 1 time(s) for 4 receiver(s)");
}

#[test]
fn wssd_client_offers_compression_unless_told_not_to() {
    let py = PyProc::spawn("deflate_peer.py", &["server"]);
    let port = py.line();
    let url = format!(
        "ws://127.0.0.1:{}/",
        port.strip_prefix("PORT ").expect("PORT")
    );
    for (flags, seen) in [
        (&[][..], "extensions permessage-deflate"),
        (&["--no-compression"][..], "extensions none"),
    ] {
        let out = Command::new(wssd_bin())
            .arg("client")
            .arg(&url)
            .args(flags)
            .args(["--send", &json_text(1000)])
            .stdin(Stdio::null())
            .output()
            .expect("run wssd client");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), json_text(1000));
        assert_eq!(py.line(), seen, "wssd client {flags:?}");
    }
}
