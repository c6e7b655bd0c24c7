//! A client that does not read: the daemon's socket to it fills for sure
//! (one echo larger than the kernel's buffers on both sides), `/status`
//! counts it in `send_blocked_connections` and `/metrics` in
//! `wssd_send_blocked_connections`, another client on the same worker is
//! served meanwhile, and once the client reads, every byte of the echo
//! arrives in order and the gauge returns to 0; so does it when a
//! blocked client goes away. Over `ws://` and `wss://` (whose records
//! the socket did not take wait in the TLS session).

use crate::support::frames::{client_frame, BINARY};
use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use openssl::ssl::{SslConnector, SslMethod, SslStream};
use wssd::client::{Client, ClientConfig, Message};

/// The client's receive buffer, set before connecting (the kernel
/// doubles it and does not grow it past that).
const CLIENT_RCVBUF: usize = 64 * 1024;

/// The echo's size: more than the daemon's socket can ever hold (the
/// host's largest TCP send buffer, `tcp_wmem`'s maximum) and the client's
/// small receive buffer together, so the daemon must keep the rest queued.
fn echo_size() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    (wmem_max + (4 << 20)).max(8 << 20)
}

/// A daemon with one worker (so both clients share it), the echo route,
/// a status listener, messages of `size` allowed, and TLS if `tls`. The
/// certificate (also the CA file) is `cert.pem` in its directory.
fn daemon(size: usize, tls: bool) -> Daemon {
    let dir = TempDir::new();
    let mut text = config(&format!("workers = 1\nmax_message_size = {size}"), ECHO)
        + "\n[status]\nlisten = \"127.0.0.1:0\"\n";
    if tls {
        make_cert(dir.path(), "cert", LOCAL_SAN, None);
        text += "\n[tls]\ncert = \"cert.pem\"\nkey = \"cert.key\"\n";
    }
    let path = dir.write("wssd.toml", &text);
    Daemon::start_in(dir, path)
}

/// `/status`'s `send_blocked_connections` total.
fn blocked_total(d: &Daemon) -> u64 {
    let doc: serde_json::Value =
        serde_json::from_str(&status_get(d.status_addr(), "/status")).expect("JSON");
    doc["totals"]["send_blocked_connections"]
        .as_u64()
        .expect("totals.send_blocked_connections in /status")
}

/// The sum of `wssd_send_blocked_connections{worker=...}` in `/metrics`.
fn blocked_metric(d: &Daemon) -> u64 {
    let text = status_get(d.status_addr(), "/metrics");
    let values: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("wssd_send_blocked_connections{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().expect("a number"))
        .collect();
    assert!(
        !values.is_empty(),
        "no wssd_send_blocked_connections in /metrics:\n{text}"
    );
    values.iter().sum()
}

/// Waits until the gauge reads `n`, saying which state never came.
fn wait_blocked(d: &Daemon, n: u64, what: &str) {
    wait_for(
        &format!("send_blocked_connections == {n} in /status ({what})"),
        || (blocked_total(d) == n).then_some(()),
    );
}

/// A TCP connection to `addr` with a small receive buffer, set before
/// the handshake so the window stays small.
fn small_window_socket(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("tests listen on IPv4 loopback, not {addr}");
    };
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    socket::setsockopt(&fd, sockopt::RcvBuf, &CLIENT_RCVBUF).expect("SO_RCVBUF");
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).expect("connect");
    let tcp = TcpStream::from(fd);
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.set_write_timeout(Some(DEADLINE)).unwrap();
    tcp
}

/// Over TLS, verifying the daemon's certificate with `ca`.
fn tls_over(tcp: TcpStream, ca: &Path) -> SslStream<TcpStream> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(ca).expect("CA file");
    builder
        .build()
        .connect("127.0.0.1", tcp)
        .expect("TLS handshake")
}

/// Sends the upgrade request for `/echo` and reads the 101 response head.
fn upgrade(s: &mut impl ReadWrite) {
    s.write_all(upgrade_request("/echo", "").as_bytes())
        .expect("write the request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
}

/// A byte stream both ways (plain or TLS).
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// `len` bytes in which a chunk lost, repeated or moved shows: byte `i`
/// is a function of `i` with a period (251, prime) that no power-of-two
/// write size divides.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect()
}

/// Reads one unfragmented binary echo of `expected` and checks every
/// byte as it arrives, naming the first that differs (at once, rather
/// than after waiting for bytes that a lost chunk would leave missing).
fn read_echo(s: &mut impl ReadWrite, expected: &[u8]) {
    let mut header = [0u8; 10];
    s.read_exact(&mut header).expect("read the echo's header");
    assert_eq!(
        header[..2],
        [0x82, 127],
        "a whole binary frame with a 64-bit length"
    );
    let len = u64::from_be_bytes(header[2..].try_into().unwrap()) as usize;
    assert_eq!(len, expected.len(), "the echo's length");
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < len {
        let want = chunk.len().min(len - at);
        let n = match s.read(&mut chunk[..want]) {
            Ok(0) => panic!("the connection ended after {at} of {len} bytes of the echo"),
            Ok(n) => n,
            Err(e) => panic!("reading the echo after {at} of {len} bytes: {e}"),
        };
        let sent = &expected[at..at + n];
        if let Some(i) = chunk[..n].iter().zip(sent).position(|(a, b)| a != b) {
            let end = (i + 8).min(n);
            panic!(
                "the echo differs from byte {} of {len} on (got {:02x?}, sent {:02x?})",
                at + i,
                &chunk[i..end],
                &sent[i..end]
            );
        }
        at += n;
    }
}

/// The scenario over a connected stream `s` (plain or TLS); `other`
/// connects a second, ordinary client to the same daemon.
fn fill_then_drain(d: &Daemon, s: &mut impl ReadWrite, other: impl Fn() -> Client) {
    upgrade(s);
    let payload = pattern(echo_size());
    assert_eq!(blocked_total(d), 0, "nothing blocked before the test");
    s.write_all(&client_frame(true, BINARY, &payload))
        .expect("send the large message");
    // Not reading: the daemon's socket fills with the echo.
    wait_blocked(d, 1, "the client does not read a large echo");
    assert_eq!(blocked_metric(d), 1, "/metrics agrees with /status");
    let mut prompt = other();
    assert_eq!(
        prompt.send_receive_text("not held up").unwrap(),
        Message::text("not held up"),
        "a second client on the same worker is served while the first is blocked"
    );
    read_echo(s, &payload);
    wait_blocked(d, 0, "the blocked client read everything");
    assert_eq!(blocked_metric(d), 0, "/metrics agrees with /status");
    // Still open and served after the pause.
    s.write_all(&client_frame(true, BINARY, b"after"))
        .expect("send after the pause");
    let mut small = [0u8; 7];
    s.read_exact(&mut small).expect("the echo after the pause");
    assert_eq!(&small, b"\x82\x05after");
}

/// Fills the daemon's socket to a fresh client, then drops the client
/// without reading: the gauge does not keep the connection.
fn fill_then_go_away(d: &Daemon, mut s: impl ReadWrite) {
    upgrade(&mut s);
    let payload = pattern(echo_size());
    s.write_all(&client_frame(true, BINARY, &payload))
        .expect("send the large message");
    wait_blocked(d, 1, "a second non-reading client");
    drop(s);
    wait_blocked(d, 0, "the blocked client went away");
}

fn plain_client(d: &Daemon) -> Client {
    let config = ClientConfig::default().with_timeout(DEADLINE);
    Client::connect(&d.url("/echo"), &config).expect("ws connect")
}

fn tls_client(d: &Daemon, ca: &Path) -> Client {
    let config = ClientConfig::default()
        .with_ca_file(ca)
        .with_timeout(DEADLINE);
    let url = format!("wss://127.0.0.1:{}/echo", d.addr.port());
    Client::connect(&url, &config).expect("wss connect")
}

#[test]
fn a_client_that_does_not_read_a_large_echo_is_counted_blocked_and_gets_it_whole() {
    let d = daemon(echo_size(), false);
    let mut s = small_window_socket(d.addr);
    fill_then_drain(&d, &mut s, || plain_client(&d));
    fill_then_go_away(&d, small_window_socket(d.addr));
}

#[test]
fn over_tls_a_client_that_does_not_read_is_counted_blocked_and_gets_every_record() {
    let d = daemon(echo_size(), true);
    let ca: PathBuf = d.dir.path().join("cert.pem");
    let mut s = tls_over(small_window_socket(d.addr), &ca);
    fill_then_drain(&d, &mut s, || tls_client(&d, &ca));
    fill_then_go_away(&d, tls_over(small_window_socket(d.addr), &ca));
}
