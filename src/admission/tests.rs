use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::handshake;
use crate::limits::Refusal;

fn request(head: &str) -> handshake::Request<'_> {
    handshake::parse_request(head.as_bytes(), 8192)
        .unwrap()
        .unwrap()
        .0
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

#[test]
fn the_view_parses_query_cookies_and_protocols() {
    let req = request(
        "GET /chat/lobby?token=a%2Bb+c&x=1&token=second HTTP/1.1\r\nHost: h\r\n\
         Cookie: sid=abc; theme=\"dark\"\r\nCookie: junk; =nameless; lang=en\r\n\
         Sec-WebSocket-Protocol: chat.v1, chat.v2\r\nsec-websocket-protocol: mqtt\r\n\r\n",
    );
    let params = vec![("room".to_string(), "lobby".to_string())];
    let peer: SocketAddr = "127.0.0.2:4000".parse().unwrap();
    let view = HandshakeRequest::new(&req, "/chat/{room}", &params, peer, false)
        .with_selected_subprotocol(Some("chat.v1"));
    assert_eq!(view.selected_subprotocol(), Some("chat.v1"));
    assert_eq!(view.method(), "GET");
    assert_eq!(view.path(), "/chat/lobby");
    assert_eq!(view.query_param("token").as_deref(), Some("a+b c"));
    assert_eq!(view.query_param("missing"), None);
    assert_eq!(
        view.cookies(),
        vec![("sid", "abc"), ("theme", "dark"), ("lang", "en")]
    );
    assert_eq!(view.cookie("lang"), Some("en"));
    assert_eq!(view.cookie("SID"), None);
    assert_eq!(view.param("room"), Some("lobby"));
    assert_eq!(view.route(), "/chat/{room}");
    assert_eq!(view.peer_addr(), peer);
    assert!(!view.is_tls());
    assert_eq!(
        view.offered_subprotocols(),
        vec!["chat.v1", "chat.v2", "mqtt"]
    );
    assert_eq!(view.header_values("cookie").count(), 2);
}

#[test]
fn subprotocols_follow_server_order() {
    let server = vec!["chat.v2".to_string(), "chat.v1".to_string()];
    assert_eq!(
        select_subprotocol(&server, &["chat.v1", "chat.v2"]),
        Some("chat.v2")
    );
    assert_eq!(select_subprotocol(&server, &["chat.v1"]), Some("chat.v1"));
    assert_eq!(select_subprotocol(&server, &["CHAT.V1"]), None);
    assert_eq!(select_subprotocol(&server, &[]), None);
}

#[test]
fn required_subprotocol_refuses_with_400() {
    let server = vec!["chat.v2".to_string()];
    let none: [(&str, &str); 0] = [];
    let other = [("Sec-WebSocket-Protocol", "mqtt")];
    let good = [("Sec-WebSocket-Protocol", "mqtt, chat.v2")];
    assert_eq!(negotiate_subprotocol(&server, false, none), Ok(None));
    assert_eq!(negotiate_subprotocol(&server, false, other), Ok(None));
    let err = negotiate_subprotocol(&server, true, other).unwrap_err();
    assert_eq!(err.status().0, 400);
    assert!(err.to_string().contains("chat.v2"), "{err}");
    assert!(negotiate_subprotocol(&server, true, none).is_err());
    assert_eq!(
        negotiate_subprotocol(&server, true, good),
        Ok(Some("chat.v2".to_string()))
    );
    // No list on the route: nothing to require.
    assert_eq!(negotiate_subprotocol(&[], true, none), Ok(None));
}

#[test]
fn rejections_render_status_headers_and_a_capped_body() {
    let d = Decision::unauthorized("Bearer realm=\"chat\"").with_body("token expired");
    let Outcome::Refuse { response, status } = conclude(KEY, None, None, [], d) else {
        panic!("not a refusal")
    };
    assert_eq!(status, 401);
    let r = text(response);
    assert!(r.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{r}");
    assert!(
        r.contains("\r\nWWW-Authenticate: Bearer realm=\"chat\"\r\n"),
        "{r}"
    );
    assert!(r.contains("\r\nContent-Length: 13\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\ntoken expired"), "{r}");

    let r = text(render_reject(429, &[], &"é".repeat(1000)));
    let body = r.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body.len(), MAX_REJECT_BODY);
    assert!(r.contains(&format!("Content-Length: {MAX_REJECT_BODY}\r\n")));

    let d = Decision::too_many_requests(Duration::from_millis(1500));
    let Outcome::Refuse { response, .. } = conclude(KEY, None, None, [], d) else {
        panic!()
    };
    let r = text(response);
    assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{r}");
    assert!(r.contains("Retry-After: 2\r\n"), "{r}");
    assert!(r.contains("Content-Length: 0\r\n"), "{r}");
}

#[test]
fn limit_refusals_are_429_or_503_with_retry_after() {
    let (status, r) = refusal_response(&Refusal::RateLimited {
        retry_after: Duration::from_millis(2100),
    });
    let r = text(r);
    assert_eq!(status, 429);
    assert!(
        r.starts_with("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n"),
        "{r}"
    );
    let (status, r) = refusal_response(&Refusal::TooManyConnections { max: 5 });
    assert_eq!(status, 429);
    assert!(text(r).contains("already has 5 connections"));
    let (status, r) = refusal_response(&Refusal::TableFull);
    assert_eq!(status, 503);
    assert!(text(r).contains("Retry-After: 1\r\n"));
}

#[test]
fn odd_statuses_and_bad_headers_are_contained() {
    let d = Decision::reject(200)
        .with_header("X-Ok", "1")
        .with_header("Content-Length", "99")
        .with_header("X-Split", "a\r\nSet-Cookie: evil=1")
        .with_header("Bad Name", "x");
    let Outcome::Refuse { response, status } = conclude(KEY, None, None, [], d) else {
        panic!()
    };
    assert_eq!(status, 500);
    let r = text(response);
    assert!(r.starts_with("HTTP/1.1 500 "), "{r}");
    assert!(r.contains("X-Ok: 1\r\n"));
    assert!(!r.contains("99"), "{r}");
    assert!(!r.contains("evil"), "{r}");
    assert!(!r.contains("Bad Name"), "{r}");
}

#[test]
fn accept_carries_subprotocol_headers_and_value() {
    let offered = [("Sec-WebSocket-Protocol", "a, b")];
    let d = Decision::accept()
        .with_header("Set-Cookie", "seen=1")
        .with_value(42u64);
    let Outcome::Open {
        response,
        subprotocol,
        value,
    } = conclude(KEY, Some("b".into()), None, offered, d)
    else {
        panic!()
    };
    assert_eq!(subprotocol.as_deref(), Some("b"));
    assert_eq!(value.get::<u64>(), Some(&42));
    assert_eq!(value.get::<String>(), None);
    let r = text(response);
    assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{r}");
    assert!(r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(r.contains("\r\nSec-WebSocket-Protocol: b\r\n"), "{r}");
    assert!(r.contains("\r\nSet-Cookie: seen=1\r\n"), "{r}");
    assert!(
        r.ends_with("\r\n\r\n") && !r.ends_with("\r\n\r\n\r\n"),
        "{r}"
    );

    // The hook may override the route's choice with another offered one...
    let d = Decision::accept().with_subprotocol("a");
    let Outcome::Open { subprotocol, .. } = conclude(KEY, Some("b".into()), None, offered, d)
    else {
        panic!()
    };
    assert_eq!(subprotocol.as_deref(), Some("a"));
    // ...but not with one the client did not offer.
    let d = Decision::accept().with_subprotocol("zzz");
    assert!(matches!(
        conclude(KEY, None, None, offered, d),
        Outcome::Refuse { status: 500, .. }
    ));
    // Without any subprotocol the 101 names none.
    let Outcome::Open { response, .. } = conclude(KEY, None, None, [], Decision::default()) else {
        panic!()
    };
    assert!(!text(response).contains("Sec-WebSocket-Protocol"));
}

#[test]
fn accept_names_the_accepted_extension_once_despite_the_hook() {
    let d = Decision::accept().with_header("Sec-WebSocket-Extensions", "x-evil");
    let answer = "permessage-deflate; server_no_context_takeover";
    let Outcome::Open { response, .. } = conclude(KEY, None, Some(answer), [], d) else {
        panic!()
    };
    let r = text(response);
    assert!(
        r.contains(&format!("\r\nSec-WebSocket-Extensions: {answer}\r\n")),
        "{r}"
    );
    assert_eq!(r.matches("Sec-WebSocket-Extensions").count(), 1, "{r}");
    assert!(
        r.ends_with("\r\n\r\n") && !r.ends_with("\r\n\r\n\r\n"),
        "{r}"
    );
}
