//! The client side of the opening handshake (RFC 6455 §4.1): build the
//! upgrade request from the URL and the [`ClientConfig`] (extra headers,
//! basic auth, subprotocols, the permessage-deflate offer), write it, read
//! and check the server's answer; the bytes behind the 101 (the first
//! frames) go to the client's frame reader.
//!
//! Done here rather than by `tungstenite::client` because tungstenite
//! fails a handshake whose answer selects no subprotocol when some were
//! offered ("Server sent no subprotocol"), while RFC 6455 leaves that to
//! the client and browsers and Python `websockets` accept it. The checks
//! are otherwise the RFC's: status 101, `Upgrade: websocket`, `Connection:
//! Upgrade`, the `Sec-WebSocket-Accept` digest, no extension we did not
//! offer (an answer to our permessage-deflate offer is checked as RFC 7692
//! §7.1 asks), and a subprotocol only if it is one we offered.

use std::io::{Read, Write};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{generate_request, Request};
use tungstenite::handshake::derive_accept_key;
use tungstenite::http::{header, HeaderName, HeaderValue};

use super::config::ClientConfig;
use super::error::{is_disconnect, is_timeout, ClientError};
use super::url::WsUrl;
use crate::deflate::{ClientOffer, Negotiated};
use crate::http_token::is_token;

/// Largest response head accepted, in bytes.
const MAX_HEAD: usize = 16 * 1024;
/// Most of an error response's body kept for the message.
const MAX_ERROR_BODY: usize = 4096;
/// Most headers in the response.
const MAX_HEADERS: usize = 64;
/// Handshake headers that tungstenite writes itself; user values replace them.
const HANDSHAKE_HEADERS: [&str; 5] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-version",
    "sec-websocket-key",
];

/// The permessage-deflate offer to make: the browsers' one when
/// `compression` is on, unless the caller's headers bring their own
/// `Sec-WebSocket-Extensions` (then no extension can be taken into use,
/// and the handshake refuses an answer that enables one).
pub(crate) fn deflate_offer(config: &ClientConfig) -> Option<ClientOffer> {
    let own = config
        .headers
        .iter()
        .any(|(name, _)| name.trim().eq_ignore_ascii_case("Sec-WebSocket-Extensions"));
    (config.compression && !own).then(ClientOffer::default)
}

/// Builds the handshake request: URL without credentials, extra headers,
/// basic auth from the URL, subprotocols.
pub(crate) fn build_request(
    url: &WsUrl,
    config: &ClientConfig,
    deflate: Option<&ClientOffer>,
) -> Result<Request, ClientError> {
    let mut request =
        url.request_uri()
            .into_client_request()
            .map_err(|err| ClientError::InvalidUrl {
                url: url.request_uri(),
                reason: err.to_string(),
            })?;
    let headers = request.headers_mut();
    for (name, value) in &config.headers {
        let invalid = |what: &str| {
            ClientError::InvalidConfig(format!("invalid header {what} in {name}: {value}"))
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid("name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| invalid("value"))?;
        if HANDSHAKE_HEADERS.contains(&name.as_str()) {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    }
    if let Some((user, password)) = &url.credentials {
        if !headers.contains_key(header::AUTHORIZATION) {
            let value = HeaderValue::from_str(&basic_auth(user, password))
                .map_err(|_| ClientError::InvalidConfig("unusable URL credentials".into()))?;
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    if let Some(bad) = config.subprotocols.iter().find(|p| !is_token(p)) {
        return Err(ClientError::InvalidConfig(format!(
            "subprotocol {bad:?} is not a valid name (letters, digits and !#$%&'*+-.^_`|~ only)"
        )));
    }
    if !config.subprotocols.is_empty() {
        let value = HeaderValue::from_str(&config.subprotocols.join(", "))
            .map_err(|_| ClientError::InvalidConfig("invalid subprotocol name".into()))?;
        headers.insert("Sec-WebSocket-Protocol", value);
    }
    if let Some(offer) = deflate {
        let value = HeaderValue::from_str(&offer.header_value())
            .map_err(|_| ClientError::InvalidConfig("invalid extension offer".into()))?;
        headers.insert("Sec-WebSocket-Extensions", value);
    }
    Ok(request)
}

/// The value of a `Basic` `Authorization`/`Proxy-Authorization` header
/// (RFC 7617): `user:password` in standard base64 with padding.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    let credentials = format!("{user}:{password}");
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(credentials.as_bytes())
    )
}

/// What a successful handshake leaves to the connection.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The bytes that followed the 101 head (the first frames).
    pub(crate) first_frames: Vec<u8>,
    /// The subprotocol the server selected.
    pub(crate) subprotocol: Option<String>,
    /// The permessage-deflate parameters in force, if the server accepted
    /// our offer.
    pub(crate) deflate: Option<Negotiated>,
}

/// Performs the handshake for `request` over `stream`, offering
/// `offered` subprotocols and the permessage-deflate offer `deflate`
/// (both already in the request's headers).
pub(crate) fn handshake<S: Read + Write>(
    stream: &mut S,
    request: Request,
    offered: &[String],
    deflate: Option<&ClientOffer>,
) -> Result<Answer, ClientError> {
    let (bytes, key) =
        generate_request(request).map_err(|e| ClientError::Handshake(e.to_string()))?;
    stream
        .write_all(&bytes)
        .and_then(|()| stream.flush())
        .map_err(|e| io_error(e, "sending the handshake request"))?;
    let (head, tail) = read_head(stream)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(&head)
        .map_err(|e| ClientError::Handshake(format!("the answer is not HTTP ({e})")))?;
    let status = response.code.unwrap_or(0);
    if status != 101 {
        let body = read_error_body(stream, response.headers, tail);
        return Err(ClientError::HandshakeStatus {
            status,
            reason: response.reason.unwrap_or("").to_string(),
            body,
        });
    }
    let (subprotocol, deflate) = verify(response.headers, &key, offered, deflate)?;
    Ok(Answer {
        first_frames: tail,
        subprotocol,
        deflate,
    })
}

/// Checks a 101 answer; returns the selected subprotocol and the
/// permessage-deflate parameters in force.
fn verify(
    headers: &[httparse::Header<'_>],
    key: &str,
    offered: &[String],
    deflate: Option<&ClientOffer>,
) -> Result<(Option<String>, Option<Negotiated>), ClientError> {
    let values = |name: &str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect::<Vec<_>>()
    };
    let has_token = |name: &str, token: &str| {
        values(name)
            .iter()
            .flat_map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .any(|t| t.eq_ignore_ascii_case(token))
    };
    let fail = |why: String| Err(ClientError::Handshake(why));
    if !has_token("Upgrade", "websocket") {
        return fail("the 101 answer has no \"Upgrade: websocket\"".into());
    }
    if !has_token("Connection", "upgrade") {
        return fail("the 101 answer has no \"Connection: Upgrade\"".into());
    }
    let accept = values("Sec-WebSocket-Accept");
    if accept.len() != 1 || accept[0] != derive_accept_key(key.as_bytes()) {
        return fail("the server's Sec-WebSocket-Accept does not match our key".into());
    }
    let extensions = values("Sec-WebSocket-Extensions");
    let negotiated = match deflate {
        None => {
            if let Some(ext) = extensions.first() {
                return fail(format!(
                    "the server enabled the extension {ext:?}, which was not offered"
                ));
            }
            None
        }
        Some(offer) => offer
            .check_answer(extensions.iter().map(String::as_str))
            .map_err(|e| ClientError::Handshake(e.to_string()))?,
    };
    let protocols = values("Sec-WebSocket-Protocol");
    let subprotocol = match protocols.as_slice() {
        [] => None,
        [one] if offered.iter().any(|o| o == one) => Some(one.clone()),
        [one] if offered.is_empty() => {
            return fail(format!(
                "the server selected the subprotocol {one:?} but none was offered"
            ))
        }
        [one] => {
            return fail(format!(
                "the server selected the subprotocol {one:?}, which was not offered (offered: {})",
                offered.join(", ")
            ))
        }
        _ => {
            return fail(format!(
                "the server selected several subprotocols ({})",
                protocols.join(", ")
            ))
        }
    };
    Ok((subprotocol, negotiated))
}

/// Reads until the end of the response head; returns the head and the
/// bytes after it (the first WebSocket frames, or an error body).
fn read_head<S: Read>(stream: &mut S) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let tail = buf.split_off(end + 4);
            return Ok((buf, tail));
        }
        if buf.len() > MAX_HEAD {
            return Err(ClientError::Handshake(format!(
                "the answer's head is larger than {MAX_HEAD} bytes"
            )));
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(ClientError::Handshake(
                    "the server closed the connection before answering: is it a WebSocket server? (ws:// vs wss://)"
                        .into(),
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e, "waiting for the handshake answer")),
        }
    }
}

/// The start of an error answer's body, as text: what came with the head
/// and, within the read timeout, up to its `Content-Length`.
fn read_error_body<S: Read>(
    stream: &mut S,
    headers: &[httparse::Header<'_>],
    mut body: Vec<u8>,
) -> String {
    let length = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0)
        .min(MAX_ERROR_BODY);
    let mut chunk = [0u8; 1024];
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().to_string()
}

/// Maps an I/O error during the handshake.
fn io_error(err: std::io::Error, what: &str) -> ClientError {
    if is_timeout(&err) {
        ClientError::Timeout {
            what: what.to_string(),
            after: None,
        }
    } else if is_disconnect(&err) {
        ClientError::Handshake(format!(
            "the server closed the connection before answering ({err}): is it a WebSocket server? (ws:// vs wss://)"
        ))
    } else {
        ClientError::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Cursor};

    /// A stream that answers with `answer` and records what was written.
    struct Scripted {
        answer: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn request(key: &str, protocols: &str) -> Request {
        let mut b = Request::builder()
            .uri("ws://h/x")
            .header("Host", "h")
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", key);
        if !protocols.is_empty() {
            b = b.header("Sec-WebSocket-Protocol", protocols);
        }
        b.body(()).unwrap()
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn run(answer: &str, offered: &[&str]) -> Result<Option<String>, ClientError> {
        let offered: Vec<String> = offered.iter().map(|s| s.to_string()).collect();
        let mut stream = Scripted {
            answer: Cursor::new(answer.as_bytes().to_vec()),
            written: Vec::new(),
        };
        handshake(
            &mut stream,
            request(KEY, &offered.join(", ")),
            &offered,
            None,
        )
        .map(|a| a.subprotocol)
    }

    fn ok101(extra: &str) -> String {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n")
    }

    #[test]
    fn subprotocol_rules_of_rfc6455_4_1() {
        assert_eq!(run(&ok101(""), &[]).unwrap(), None);
        // Offered but none selected: accepted, as browsers do.
        assert_eq!(run(&ok101(""), &["chat"]).unwrap(), None);
        assert_eq!(
            run(&ok101("Sec-WebSocket-Protocol: b\r\n"), &["a", "b"]).unwrap(),
            Some("b".to_string())
        );
        for (extra, offered) in [
            ("Sec-WebSocket-Protocol: c\r\n", &["a", "b"][..]),
            ("Sec-WebSocket-Protocol: a\r\n", &[][..]),
            (
                "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n",
                &["a", "b"][..],
            ),
        ] {
            assert!(
                matches!(run(&ok101(extra), offered), Err(ClientError::Handshake(_))),
                "{extra:?}"
            );
        }
    }

    fn run_deflate(extra: &str) -> Result<Option<Negotiated>, ClientError> {
        let mut stream = Scripted {
            answer: Cursor::new(ok101(extra).into_bytes()),
            written: Vec::new(),
        };
        let offer = ClientOffer::default();
        handshake(&mut stream, request(KEY, ""), &[], Some(&offer)).map(|a| a.deflate)
    }

    #[test]
    fn permessage_deflate_answers_are_checked() {
        assert_eq!(run_deflate("").unwrap(), None);
        let accepted = run_deflate(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n",
        )
        .unwrap()
        .expect("accepted");
        assert!(accepted.server_no_context_takeover);
        assert_eq!(accepted.client_max_window_bits, 10);
        for extra in [
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
            "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n",
        ] {
            let err = run_deflate(extra).unwrap_err().to_string();
            assert!(err.contains("Sec-WebSocket-Extensions"), "{extra:?}: {err}");
        }
    }

    #[test]
    fn bad_answers_fail_with_reasons() {
        let wrong_accept = ok101("").replace(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let err = run(&wrong_accept, &[]).unwrap_err().to_string();
        assert!(err.contains("Sec-WebSocket-Accept"), "{err}");
        let ext = ok101("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert!(run(&ext, &[]).is_err());
        let no_upgrade = ok101("").replace("Upgrade: websocket\r\n", "");
        assert!(run(&no_upgrade, &[]).is_err());
        let err = run("", &[]).unwrap_err().to_string();
        assert!(err.contains("before answering"), "{err}");
        match run(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\nWWW-Authenticate: Bearer\r\n\r\ntoken expired",
            &[],
        ) {
            Err(ClientError::HandshakeStatus {
                status: 401,
                reason,
                body,
            }) => {
                assert_eq!(reason, "Unauthorized");
                assert_eq!(body, "token expired");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_has_headers_auth_and_no_credentials_in_uri() {
        let url = WsUrl::parse("ws://u:p@example.com:81/x?y=1").unwrap();
        let config = ClientConfig::default()
            .with_header("X-Test", "1")
            .with_header("Host", "other")
            .with_subprotocol("chat");
        let request = build_request(&url, &config, None).unwrap();
        assert_eq!(request.uri().to_string(), "ws://example.com:81/x?y=1");
        let headers = request.headers();
        assert_eq!(headers["x-test"], "1");
        assert_eq!(headers["host"], "other");
        assert_eq!(headers.get_all("host").iter().count(), 1);
        assert_eq!(headers["authorization"], "Basic dTpw");
        assert_eq!(headers["sec-websocket-protocol"], "chat");
    }

    #[test]
    fn bad_header_is_a_config_error() {
        let url = WsUrl::parse("ws://h/").unwrap();
        let config = ClientConfig::default().with_header("Bad Name", "v");
        assert!(matches!(
            build_request(&url, &config, None),
            Err(ClientError::InvalidConfig(_))
        ));
    }

    #[test]
    fn basic_auth_header() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("", ""), "Basic Og==");
    }
}
