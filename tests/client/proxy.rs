//! Library: connections through a real HTTP CONNECT proxy (tinyproxy), open
//! and with BasicAuth, for ws:// and wss://, and the proxy error cases.

use std::time::Duration;

use crate::support::{closed_port, Certs, SilentServer, Tinyproxy, DEADLINE};
use crate::{ws_server, ws_server_tls};
use wssd::client::{Client, ClientConfig, ClientError, Message};

fn base() -> ClientConfig {
    ClientConfig::default().with_timeout(DEADLINE)
}

fn assert_echo(client: &mut Client) {
    assert_eq!(
        client.send_receive_text("via proxy").unwrap(),
        Message::text("via proxy")
    );
    client.send_binary(&[9, 8, 7]).unwrap();
    assert_eq!(client.receive().unwrap(), Message::binary(vec![9, 8, 7]));
}

#[test]
fn ws_and_wss_through_an_open_proxy() {
    let proxy = Tinyproxy::start(None, &[]);
    let server = ws_server();
    let config = base()
        .with_proxy(proxy.address())
        .with_header("X-Through", "proxy");
    let mut client = Client::connect(&server.url("/p?q=1"), &config).expect("ws via proxy");
    assert_echo(&mut client);
    let report = client
        .send_receive_text("headers?")
        .unwrap()
        .to_text_lossy();
    assert!(report.contains(r#""x-through": "proxy""#), "{report}");
    assert!(report.contains(r#""path": "/p?q=1""#), "{report}");
    assert!(!report.contains("proxy-authorization"), "{report}");
    client.close(1000, "").unwrap();

    let certs = Certs::generate();
    let tls_server = ws_server_tls(&certs);
    // Uncompressed: the frames counted below are the message's own.
    let config = base()
        .with_proxy(proxy.address())
        .with_ca_file(&certs.cert)
        .with_fragment_size(1000)
        .with_compression(false);
    let mut client = Client::connect(&tls_server.url("/"), &config).expect("wss via proxy");
    assert_echo(&mut client);
    client.send_text("frames-next").unwrap();
    client.send_text(&"q".repeat(1_000_000)).unwrap();
    assert_eq!(
        client.receive().unwrap(),
        Message::text("frames=1000 bytes=1000000")
    );
    client.close(1000, "").unwrap();
}

#[test]
fn ws_and_wss_through_a_proxy_with_basic_auth() {
    let proxy = Tinyproxy::start(Some(("wsuser", "s3cret")), &[]);
    let server = ws_server();
    let config = base()
        .with_proxy(proxy.address())
        .with_proxy_auth("wsuser", "s3cret");
    let mut client = Client::connect(&server.url("/"), &config).expect("ws via auth proxy");
    assert_echo(&mut client);
    client.close(1000, "").unwrap();

    let certs = Certs::generate();
    let tls_server = ws_server_tls(&certs);
    let config = config.with_ca_file(&certs.cert);
    let mut client = Client::connect(&tls_server.url("/"), &config).expect("wss via auth proxy");
    assert_echo(&mut client);
    client.close(1000, "").unwrap();
}

#[test]
fn wrong_or_missing_proxy_credentials() {
    let proxy = Tinyproxy::start(Some(("wsuser", "s3cret")), &[]);
    let server = ws_server();
    // tinyproxy 1.11 answers wrong credentials with 401, missing ones with 407.
    let wrong = base()
        .with_proxy(proxy.address())
        .with_proxy_auth("wsuser", "wrong");
    match Client::connect(&server.url("/"), &wrong) {
        Err(
            err @ ClientError::ProxyAuth {
                credentials_sent: true,
                status: 401 | 407,
                ..
            },
        ) => {
            assert!(
                err.to_string().contains("proxy authentication failed"),
                "{err}"
            )
        }
        other => panic!("expected a proxy authentication failure, got {other:?}"),
    }
    let missing = base().with_proxy(proxy.address());
    match Client::connect(&server.url("/"), &missing) {
        Err(
            err @ ClientError::ProxyAuth {
                credentials_sent: false,
                status: 407,
                ..
            },
        ) => {
            let text = err.to_string();
            assert!(
                text.contains("407") && text.contains("authentication required"),
                "{text}"
            )
        }
        other => panic!("expected 407, got {other:?}"),
    }
}

#[test]
fn proxy_forbidding_the_target_port_is_a_403() {
    let proxy = Tinyproxy::start(None, &["ConnectPort 443"]);
    let server = ws_server();
    match Client::connect(&server.url("/"), &base().with_proxy(proxy.address())) {
        Err(err @ ClientError::ProxyStatus { status: 403, .. }) => {
            assert!(err.to_string().contains("403"), "{err}")
        }
        other => panic!("expected 403 from the proxy, got {other:?}"),
    }
}

#[test]
fn proxy_that_is_not_running() {
    let port = closed_port();
    let config = base().with_proxy(format!("127.0.0.1:{port}"));
    match Client::connect("ws://127.0.0.1:1/", &config) {
        Err(err @ ClientError::ConnectionRefused { peer: "proxy", .. }) => {
            assert!(err.to_string().contains("proxy"), "{err}")
        }
        other => panic!("expected the proxy to refuse, got {other:?}"),
    }
}

#[test]
fn proxy_cannot_reach_the_target() {
    let proxy = Tinyproxy::start(None, &[]);
    let port = closed_port();
    match Client::connect(
        &format!("ws://127.0.0.1:{port}/"),
        &base().with_proxy(proxy.address()),
    ) {
        Err(ClientError::ProxyStatus { status, .. }) => assert!(status >= 500, "status {status}"),
        other => panic!("expected an error status from the proxy, got {other:?}"),
    }
}

#[test]
fn proxy_address_without_port_is_a_config_error() {
    let config = base().with_proxy("127.0.0.1");
    assert!(matches!(
        Client::connect("ws://127.0.0.1:1/", &config),
        Err(ClientError::InvalidConfig(_))
    ));
}

#[test]
fn silent_proxy_times_out() {
    let proxy = SilentServer::start();
    let config = ClientConfig::default()
        .with_timeout(Duration::from_secs(1))
        .with_proxy(format!("127.0.0.1:{}", proxy.port));
    match Client::connect("ws://127.0.0.1:1/", &config) {
        Err(err @ ClientError::Timeout { .. }) => {
            let text = err.to_string();
            assert!(text.contains("CONNECT") && text.contains("proxy"), "{text}")
        }
        other => panic!("expected a timeout waiting for the proxy, got {other:?}"),
    }
}
