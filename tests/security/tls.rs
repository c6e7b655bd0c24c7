//! wss://: a certificate made at test time, verified by Python
//! websockets over TLS 1.3 (preferred) and 1.2; plain text to the TLS port fails alone; bad files
//! are config errors naming the file; SIGHUP picks up a renewed cert; a
//! closed connection ends with close_notify.

use crate::support::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use openssl::ssl::{ShutdownState, SslConnector, SslMethod, SslStream};

use crate::support::frames::{client_frame, head_end, parse_all};

use wssd::client::{Client, ClientConfig, Message};

/// A self-signed certificate for 127.0.0.1 with `serial` (hex) as
/// `dir/NAME.pem` and `dir/NAME.key`.
fn cert_with_serial(dir: &Path, name: &str, serial: &str) {
    make_cert(dir, name, LOCAL_SAN, Some(serial));
}

fn tls_daemon() -> Daemon {
    tls_daemon_with("")
}

/// A TLS daemon with `extra` sections in its configuration.
fn tls_daemon_with(extra: &str) -> Daemon {
    let dir = TempDir::new();
    cert_with_serial(dir.path(), "a", "A1A1");
    let text = config("", ECHO) + "\n[tls]\ncert = \"cert.pem\"\nkey = \"cert.key\"\n" + extra;
    std::fs::copy(dir.path().join("a.pem"), dir.path().join("cert.pem")).unwrap();
    std::fs::copy(dir.path().join("a.key"), dir.path().join("cert.key")).unwrap();
    let path = dir.write("wssd.toml", &text);
    Daemon::start_in(dir, path)
}

fn wss(d: &Daemon) -> String {
    format!("wss://127.0.0.1:{}/echo", d.addr.port())
}

#[test]
fn python_verifies_the_certificate_and_echoes() {
    let d = tls_daemon();
    let ca = d.dir.path().join("a.pem");
    let out = wsprobe(&["echo-tls", &wss(&d), ca.to_str().unwrap()]);
    assert_eq!(out.trim(), "ok A1A1 TLSv1.3");
}

#[test]
fn a_client_limited_to_tls_1_2_is_served_too() {
    let d = tls_daemon();
    let ca = d.dir.path().join("a.pem");
    let out = wsprobe(&["echo-tls", &wss(&d), ca.to_str().unwrap(), "1.2"]);
    assert_eq!(out.trim(), "ok A1A1 TLSv1.2");
}

#[test]
fn plain_text_to_the_tls_port_fails_cleanly_and_others_are_served() {
    let d = tls_daemon();
    let reply = raw_exchange(d.addr, upgrade_request("/echo", "").as_bytes());
    assert!(
        !reply.contains("101"),
        "no upgrade over plain text: {reply:?}"
    );
    // A TLS handshake that never completes only costs its own connection.
    let _stalled = std::net::TcpStream::connect(d.addr).unwrap();
    let ca = d.dir.path().join("a.pem");
    let out = wsprobe(&["echo-tls", &wss(&d), ca.to_str().unwrap()]);
    assert!(out.starts_with("ok"), "{out}");
}

/// A client that connects to the TLS port and sends nothing (no
/// ClientHello) is closed after `handshake_timeout`, although the TLS
/// handshake starts only when its first bytes arrive.
#[test]
fn a_silent_client_of_the_tls_port_is_closed_after_handshake_timeout() {
    use std::io::Read;
    let dir = TempDir::new();
    cert_with_serial(dir.path(), "a", "A1A1");
    let text =
        config("handshake_timeout = \"1s\"", ECHO) + "\n[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n";
    let path = dir.write("wssd.toml", &text);
    let d = Daemon::start_in(dir, path);
    let mut silent = std::net::TcpStream::connect(d.addr).unwrap();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 64];
    // EOF or a reset once the server drops us; a timeout here would mean
    // the deadline was never set.
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "not closed: {e}"
        ),
    }
    d.wait_log_contains("handshake_timeout passed");
}

#[test]
fn sighup_picks_up_a_renewed_certificate() {
    let d = tls_daemon();
    cert_with_serial(d.dir.path(), "b", "B2B2");
    std::fs::copy(d.dir.path().join("b.pem"), d.dir.path().join("cert.pem")).unwrap();
    std::fs::copy(d.dir.path().join("b.key"), d.dir.path().join("cert.key")).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log_contains("reloaded");
    let ca = d.dir.path().join("b.pem");
    let out = wait_for("the renewed certificate", || {
        let out = wsprobe(&["echo-tls", &wss(&d), ca.to_str().unwrap()]);
        out.contains("B2B2").then_some(out)
    });
    assert_eq!(out.trim(), "ok B2B2 TLSv1.3");
}

#[test]
fn missing_or_mismatched_files_are_config_errors_naming_the_file() {
    let dir = TempDir::new();
    cert_with_serial(dir.path(), "a", "01");
    cert_with_serial(dir.path(), "b", "02");
    let cases = [
        (
            "cert = \"nope.pem\"\nkey = \"a.key\"",
            "tls.cert",
            "nope.pem",
        ),
        (
            "cert = \"a.pem\"\nkey = \"nope.key\"",
            "tls.key",
            "nope.key",
        ),
        ("cert = \"a.pem\"\nkey = \"b.key\"", "tls.key", "b.key"),
        ("cert = \"a.key\"\nkey = \"a.key\"", "tls", "a.key"),
    ];
    for (tls, key, file) in cases {
        let path = dir.write("w.toml", &(config("", ECHO) + "\n[tls]\n" + tls + "\n"));
        let mut cmd = Command::new(wssd_bin());
        cmd.arg("--check").arg("--config").arg(&path);
        let out = run(cmd, b"");
        let err = &out.stderr;
        assert_eq!(out.code(), Some(2), "{tls}: {err}");
        assert!(err.contains(key) && err.contains(file), "{tls}: {err}");
    }
}

/// A raw TLS connection (OpenSSL, verifying the daemon with `ca`) that
/// has sent the upgrade request for `/echo`; the answer is not read yet.
fn raw_wss(d: &Daemon, ca: &Path) -> SslStream<std::net::TcpStream> {
    let tcp = std::net::TcpStream::connect(d.addr).expect("connect");
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(ca).expect("CA file");
    let mut tls = builder
        .build()
        .connect("127.0.0.1", tcp)
        .expect("TLS handshake");
    tls.write_all(upgrade_request("/echo", "").as_bytes())
        .expect("write the request");
    tls
}

/// The daemon ends a TLS connection with close_notify after the closing
/// handshake, so that a client can tell a complete end from a cut one
/// (OpenSSL, the client here, notes close_notify in its shutdown state).
#[test]
fn a_closed_tls_connection_ends_with_close_notify() {
    let d = tls_daemon();
    let ca = d.dir.path().join("a.pem");
    let mut tls = raw_wss(&d, &ca);
    tls.write_all(&client_frame(true, 8, &1000u16.to_be_bytes()))
        .expect("write a close frame");
    let mut got = Vec::new();
    let end = loop {
        let mut buf = [0u8; 4096];
        match tls.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let head = head_end(&got).expect("a response head");
    assert!(got.starts_with(b"HTTP/1.1 101"), "no upgrade");
    let frames = parse_all(&got[head..]);
    assert_eq!(
        frames.last().and_then(|f| f.close_code()),
        Some(1000),
        "the close frame answered"
    );
    assert!(end.is_ok(), "the end of the session: {end:?}");
    assert!(
        tls.get_shutdown().contains(ShutdownState::RECEIVED),
        "the TLS session ended without close_notify"
    );
}

/// After the daemon's close_notify (here: it fails a connection for a
/// reserved opcode), what the peer still sends is only waited through:
/// a broken TLS record then ends that connection alone, and the worker
/// (the only one) serves its other connection on. (rustls, asked to
/// decrypt it, would answer with an alert after its close_notify, which
/// a debug build asserts against.)
#[test]
fn a_broken_record_after_the_daemons_close_notify_ends_only_that_connection() {
    let dir = TempDir::new();
    cert_with_serial(dir.path(), "a", "A1A1");
    let text = config("workers = 1", ECHO) + "\n[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n";
    let path = dir.write("wssd.toml", &text);
    let d = Daemon::start_in(dir, path);
    let ca = d.dir.path().join("a.pem");
    let config = ClientConfig::default()
        .with_ca_file(&ca)
        .with_timeout(DEADLINE);
    let mut other = Client::connect(&wss(&d), &config).expect("wss connect");
    assert_eq!(
        other.send_receive_text("before").unwrap(),
        Message::text("before")
    );

    let mut tls = raw_wss(&d, &ca);
    tls.write_all(&client_frame(true, 0x3, b""))
        .expect("write a frame with a reserved opcode");
    let mut got = Vec::new();
    while tls.get_shutdown().is_empty() {
        let mut buf = [0u8; 4096];
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the daemon's answer: {e}"),
        }
    }
    assert!(
        tls.get_shutdown().contains(ShutdownState::RECEIVED),
        "close_notify came"
    );
    let head = head_end(&got).expect("a response head");
    let frames = parse_all(&got[head..]);
    assert_eq!(frames.last().and_then(|f| f.close_code()), Some(1002));
    // An application-data record that cannot decrypt, then our end.
    let mut junk = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    junk.extend_from_slice(&[0x5a; 0x40]);
    let tcp = tls.get_mut();
    tcp.write_all(&junk).expect("write the broken record");
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest); // the daemon's end of the connection

    assert_eq!(
        other.send_receive_text("after").unwrap(),
        Message::text("after"),
        "the worker's other connection is served on"
    );
}

/// Records that arrive together (a burst of small messages, then one
/// message of many records) are all read and echoed: a TLS read that
/// emptied the socket does not leave decrypted or read-ahead bytes behind.
#[test]
fn a_burst_of_records_and_a_message_of_many_records_all_come_back() {
    let d = tls_daemon();
    let ca = d.dir.path().join("a.pem");
    let config = ClientConfig::default()
        .with_ca_file(&ca)
        .with_timeout(DEADLINE);
    let mut client = Client::connect(&wss(&d), &config).expect("wss connect");
    let texts: Vec<String> = (0..200).map(|i| format!("message {i}")).collect();
    for t in &texts {
        client.send_text(t).unwrap();
    }
    for t in &texts {
        assert_eq!(client.receive().unwrap(), Message::text(t.as_str()));
    }
    let large: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(
        client.send_receive_text(&large).unwrap(),
        Message::text(large.as_str())
    );
}

/// Messages of many records (rustls's up to 64 KiB at a time) meet a client
/// that reads slower than the daemon writes: records that the socket did
/// not take wait for it, in order, and every message comes back whole
/// (Python websockets checks them).
#[test]
fn large_messages_to_a_slow_reader_over_tls_come_back_whole_and_in_order() {
    let d = tls_daemon();
    let ca = d.dir.path().join("a.pem");
    let out = wsprobe(&["flood-tls", &wss(&d), ca.to_str().unwrap(), "40", "300000"]);
    assert_eq!(out.trim(), "ok 40");
}
