//! Library: messages, headers, ping, fragmentation, close codes and
//! connection errors, against the independent Python `websockets` server.

use std::time::Duration;

use crate::support::{closed_port, SilentServer, DEADLINE};
use crate::ws_server;
use wssd::client::{Client, ClientConfig, ClientError, CloseCode, Message};

fn config() -> ClientConfig {
    ClientConfig::default().with_timeout(DEADLINE)
}

fn header_report(client: &mut Client) -> String {
    match client
        .send_receive_text("headers?")
        .expect("headers? reply")
    {
        Message::Text(text) => text.into(),
        other @ Message::Binary(_) => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn text_and_binary_echo() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).expect("connect");
    assert_eq!(
        client.send_receive_text("héllo").unwrap(),
        Message::text("héllo")
    );
    let bytes: Vec<u8> = (0..=255u8).collect();
    client.send_binary(&bytes).unwrap();
    assert_eq!(client.receive().unwrap(), Message::binary(bytes));
    let reply = client.send_receive(Message::text(String::new())).unwrap();
    assert_eq!(reply, Message::text(String::new()));
    client.close(1000, "done").unwrap();
    assert!(client.is_closed());
}

#[test]
fn one_megabyte_in_fragments_of_1000_bytes() {
    let server = ws_server();
    // Uncompressed: the frames counted are the message's own (compressed,
    // 1 MB of this text would fit in a few frames).
    let cfg = config().with_fragment_size(1000).with_compression(false);
    let mut client = Client::connect(&server.url("/"), &cfg).unwrap();
    let big: String = (0..1_000_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    // The server reads the next message frame by frame and reports what it saw.
    client.send_text("frames-next").unwrap();
    client.send_text(&big).unwrap();
    assert_eq!(
        client.receive().unwrap(),
        Message::text("frames=1000 bytes=1000000")
    );
    // And the whole message arrives intact (binary too).
    assert_eq!(
        client.send_receive_text(&big).unwrap(),
        Message::text(big.clone())
    );
    let data = big.into_bytes();
    client.send_binary(&data).unwrap();
    assert_eq!(client.receive().unwrap(), Message::binary(data));
    client.close(1000, "").unwrap();
}

#[test]
fn unfragmented_by_default() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).unwrap();
    client.send_text("frames-next").unwrap();
    client.send_text(&"x".repeat(5000)).unwrap();
    assert_eq!(
        client.receive().unwrap(),
        Message::text("frames=1 bytes=5000")
    );
}

#[test]
fn custom_headers_url_credentials_and_query_reach_the_server() {
    let server = ws_server();
    let url = format!(
        "ws://alice:s%3Acret@127.0.0.1:{}/room/1?token=abc&x=y",
        server.port
    );
    let config = config()
        .with_header("X-Custom", "forty two")
        .with_header("Origin", "http://example.test");
    let mut client = Client::connect(&url, &config).unwrap();
    let report = header_report(&mut client);
    assert!(
        report.contains(r#""path": "/room/1?token=abc&x=y""#),
        "{report}"
    );
    assert!(report.contains(r#""x-custom": "forty two""#), "{report}");
    assert!(
        report.contains(r#""origin": "http://example.test""#),
        "{report}"
    );
    // base64("alice:s:cret")
    assert!(
        report.contains(r#""authorization": "Basic YWxpY2U6czpjcmV0""#),
        "{report}"
    );
    assert!(!report.contains("alice"), "credentials leaked: {report}");
}

#[test]
fn subprotocol_is_negotiated() {
    let server = ws_server();
    let config = config()
        .with_subprotocol("nope")
        .with_subprotocol("superchat");
    let mut client = Client::connect(&server.url("/"), &config).unwrap();
    assert_eq!(client.subprotocol(), Some("superchat"));
    assert_eq!(
        client.send_receive_text("subprotocol?").unwrap(),
        Message::text("superchat")
    );
}

#[test]
fn pings_from_the_server_are_answered_while_receiving() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).unwrap();
    // The server pings and only replies once our pong arrived.
    assert_eq!(
        client.send_receive_text("ping-me").unwrap(),
        Message::text("pong-received")
    );
}

#[test]
fn ping_waits_for_the_pong_and_keeps_data_messages() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).unwrap();
    client.send_text("push:3").unwrap();
    client.ping(b"hi").expect("pong");
    for i in 1..=3 {
        assert_eq!(
            client.receive().unwrap(),
            Message::text(format!("push-{i}"))
        );
    }
}

#[test]
fn client_close_gets_the_servers_close_code() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).unwrap();
    assert_eq!(client.close_code(), None);
    client.close(4000, "bye now").unwrap();
    // websockets echoes the client's close code in its reply.
    assert_eq!(client.close_code(), Some(CloseCode::new(4000)));
    assert!(matches!(
        client.send_text("x"),
        Err(ClientError::Closed { .. })
    ));
}

#[test]
fn server_close_code_and_reason_are_reported() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).unwrap();
    client.send_text("close:4001:going away now").unwrap();
    match client.receive() {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(
                (code, reason.as_str()),
                (CloseCode::new(4001), "going away now")
            )
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(client.close_code(), Some(CloseCode::new(4001)));
    assert_eq!(client.close_reason(), Some("going away now"));
    assert!(client.is_closed());
    client
        .close(1000, "")
        .expect("close after the peer closed is a no-op");
}

#[test]
fn invalid_close_code_is_refused() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).unwrap();
    assert!(matches!(
        client.close(1005, ""),
        Err(ClientError::InvalidConfig(_))
    ));
    client.close(1000, "").unwrap();
}

#[test]
fn incoming_message_over_the_limit_is_an_error() {
    let server = ws_server();
    let config = ClientConfig {
        max_message_size: Some(1000),
        ..config()
    };
    let mut client = Client::connect(&server.url("/"), &config).unwrap();
    client.send_text(&"y".repeat(2000)).unwrap();
    match client.receive() {
        Err(err @ ClientError::MessageTooLarge { .. }) => {
            assert!(err.to_string().contains("limit is 1000"), "{err}")
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
}

#[test]
fn handshake_refused_with_http_status() {
    let server = ws_server();
    match Client::connect(&server.url("/forbidden"), &config()) {
        Err(err @ ClientError::HandshakeStatus { status: 403, .. }) => {
            assert!(err.to_string().contains("HTTP 403"), "{err}")
        }
        other => panic!("expected HandshakeStatus 403, got {other:?}"),
    }
}

#[test]
fn connection_refused() {
    let port = closed_port();
    match Client::connect(&format!("ws://127.0.0.1:{port}/"), &config()) {
        Err(err @ ClientError::ConnectionRefused { .. }) => {
            assert!(err.to_string().contains("connection refused"), "{err}")
        }
        other => panic!("expected ConnectionRefused, got {other:?}"),
    }
}

#[test]
fn unresolvable_host() {
    match Client::connect("ws://no-such-host.invalid/", &config()) {
        Err(err @ ClientError::Resolve { .. }) => {
            assert!(err.to_string().contains("no-such-host.invalid"), "{err}")
        }
        other => panic!("expected Resolve, got {other:?}"),
    }
}

#[test]
fn silent_server_times_out_in_the_handshake() {
    let server = SilentServer::start();
    let config = ClientConfig::default().with_timeout(Duration::from_secs(1));
    match Client::connect(&format!("ws://127.0.0.1:{}/", server.port), &config) {
        Err(err @ ClientError::Timeout { .. }) => {
            assert!(err.to_string().contains("timed out"), "{err}")
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[test]
fn receive_times_out_when_nothing_comes() {
    let server = ws_server();
    let mut client = Client::connect(&server.url("/"), &config()).unwrap();
    client.set_read_timeout(Some(Duration::from_millis(300)));
    assert!(matches!(client.receive(), Err(ClientError::Timeout { .. })));
    // The connection is still usable afterwards.
    client.set_read_timeout(Some(DEADLINE));
    assert_eq!(
        client.send_receive_text("still here").unwrap(),
        Message::text("still here")
    );
}

#[test]
fn bad_urls_are_rejected_before_connecting() {
    for url in ["http://127.0.0.1/", "ws://", "ws://h:70000/"] {
        assert!(
            matches!(
                Client::connect(url, &config()),
                Err(ClientError::InvalidUrl { .. })
            ),
            "{url}"
        );
    }
}
