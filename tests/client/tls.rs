//! Library: `wss://` against the Python `websockets` server with a
//! certificate generated at test time; CA file, --insecure, verification errors.

use std::fs;
use std::time::Duration;

use crate::support::{Certs, SilentServer, TempDir, DEADLINE};
use crate::ws_server_tls;
use wssd::client::{Client, ClientConfig, ClientError, CloseCode, Message};

fn config() -> ClientConfig {
    ClientConfig::default().with_timeout(DEADLINE)
}

#[test]
fn wss_with_ca_file_text_binary_headers_and_fragments() {
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    // Uncompressed: the frames counted below are the message's own
    // (compressed, 1 MB of one letter fits in a few fragments).
    let config = config()
        .with_ca_file(&certs.cert)
        .with_header("X-Over-Tls", "yes")
        .with_fragment_size(1000)
        .with_compression(false);
    let mut client = Client::connect(&server.url("/secure?a=1"), &config).expect("wss connect");
    assert_eq!(
        client.send_receive_text("over tls").unwrap(),
        Message::text("over tls")
    );
    client.send_binary(&[0, 1, 2, 255]).unwrap();
    assert_eq!(
        client.receive().unwrap(),
        Message::binary(vec![0, 1, 2, 255])
    );
    let report = client
        .send_receive_text("headers?")
        .unwrap()
        .to_text_lossy();
    assert!(report.contains(r#""x-over-tls": "yes""#), "{report}");
    assert!(report.contains(r#""path": "/secure?a=1""#), "{report}");
    client.send_text("frames-next").unwrap();
    client.send_text(&"z".repeat(1_000_000)).unwrap();
    assert_eq!(
        client.receive().unwrap(),
        Message::text("frames=1000 bytes=1000000")
    );
    client.close(4002, "tls bye").unwrap();
    assert_eq!(client.close_code(), Some(CloseCode::new(4002)));
}

#[test]
fn wss_by_host_name_checks_the_name() {
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    let url = format!("wss://localhost:{}/", server.port);
    let mut client = Client::connect(&url, &config().with_ca_file(&certs.cert))
        .expect("localhost is in the SAN");
    assert_eq!(client.send_receive_text("hi").unwrap(), Message::text("hi"));
    client.close(1000, "").unwrap();
}

#[test]
fn ca_file_with_several_certificates() {
    let other = Certs::generate_for("DNS:other.example");
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    let dir = TempDir::new();
    let bundle = dir.path().join("bundle.pem");
    let text = fs::read_to_string(&other.cert).unwrap() + &fs::read_to_string(&certs.cert).unwrap();
    fs::write(&bundle, text).unwrap();
    let mut client = Client::connect(&server.url("/"), &config().with_ca_file(&bundle))
        .expect("second cert trusted");
    assert_eq!(
        client.send_receive_text("bundle").unwrap(),
        Message::text("bundle")
    );
}

#[test]
fn untrusted_certificate_is_a_verification_error() {
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    match Client::connect(&server.url("/"), &config()) {
        Err(
            err @ ClientError::Tls {
                verification: true, ..
            },
        ) => {
            let text = err.to_string();
            assert!(text.contains("certificate verification failed"), "{text}");
            assert!(text.contains("--ca-file"), "{text}");
        }
        other => panic!("expected a TLS verification error, got {other:?}"),
    }
}

#[test]
fn wrong_host_name_is_a_verification_error() {
    let certs = Certs::generate_for("DNS:other.example");
    let server = ws_server_tls(&certs);
    match Client::connect(&server.url("/"), &config().with_ca_file(&certs.cert)) {
        Err(ClientError::Tls {
            verification: true, ..
        }) => {}
        other => panic!("expected a host name verification error, got {other:?}"),
    }
}

#[test]
fn insecure_accepts_any_certificate() {
    let certs = Certs::generate_for("DNS:other.example");
    let server = ws_server_tls(&certs);
    let mut client = Client::connect(&server.url("/"), &config().with_accept_invalid_certs(true))
        .expect("insecure connect");
    assert_eq!(
        client.send_receive_text("anything").unwrap(),
        Message::text("anything")
    );
}

#[test]
fn missing_or_empty_ca_file() {
    let dir = TempDir::new();
    let empty = dir.path().join("empty.pem");
    fs::write(&empty, "not a certificate\n").unwrap();
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    for path in [empty, dir.path().join("missing.pem")] {
        match Client::connect(&server.url("/"), &config().with_ca_file(&path)) {
            Err(ClientError::CaFile { .. }) => {}
            other => panic!(
                "expected CaFile error for {}, got {other:?}",
                path.display()
            ),
        }
    }
}

#[test]
fn plain_ws_to_a_tls_server_fails_clearly() {
    let certs = Certs::generate();
    let server = ws_server_tls(&certs);
    let url = format!("ws://127.0.0.1:{}/", server.port);
    match Client::connect(&url, &config()) {
        Err(ClientError::Handshake(_)) | Err(ClientError::HandshakeStatus { .. }) => {}
        other => panic!("expected a handshake failure, got {other:?}"),
    }
}

#[test]
fn silent_server_times_out_in_the_tls_handshake() {
    let server = SilentServer::start();
    let config = ClientConfig::default().with_timeout(Duration::from_secs(1));
    match Client::connect(&format!("wss://127.0.0.1:{}/", server.port), &config) {
        Err(err @ ClientError::Timeout { .. }) => {
            assert!(err.to_string().contains("TLS handshake"), "{err}")
        }
        other => panic!("expected a TLS handshake timeout, got {other:?}"),
    }
}
