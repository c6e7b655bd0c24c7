//! The byte stream under the WebSocket: TCP connect (with timeout, trying
//! each resolved address), an optional HTTP CONNECT tunnel through a proxy,
//! and optional TLS.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use native_tls::{Certificate, HandshakeError, TlsConnector, TlsStream};

use super::error::{is_timeout, ClientError};
use super::handshake::basic_auth;
use super::url::{bracketed, parse_host_port, WsUrl};
use super::{ClientConfig, Proxy, TlsOptions};

/// Largest proxy response head accepted, in bytes.
const MAX_PROXY_HEAD: usize = 16 * 1024;

/// A TCP stream, or TLS over one.
#[derive(Debug)]
pub(crate) enum MaybeTls {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// The TCP socket underneath (for timeouts and shutdown).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(tcp) => tcp,
            MaybeTls::Tls(tls) => tls.get_ref(),
        }
    }

    /// Shuts the TCP connection down in both directions, ignoring errors.
    pub fn shutdown(&self) {
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
}

impl Read for MaybeTls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(tcp) => tcp.read(buf),
            MaybeTls::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for MaybeTls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(tcp) => tcp.write(buf),
            MaybeTls::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(tcp) => tcp.flush(),
            MaybeTls::Tls(tls) => tls.flush(),
        }
    }
}

/// Opens the stream to the server of `url`: directly or through the proxy,
/// then TLS for `wss://`. Read and write timeouts are set on the socket.
pub(crate) fn open(url: &WsUrl, config: &ClientConfig) -> Result<MaybeTls, ClientError> {
    let tcp = match &config.proxy {
        Some(proxy) => {
            let (host, port) = parse_host_port(&proxy.address, 0)
                .ok()
                .filter(|(_, port)| *port != 0)
                .ok_or_else(|| {
                    ClientError::InvalidConfig(format!(
                        "proxy {:?} must be HOST:PORT",
                        proxy.address
                    ))
                })?;
            let mut tcp = connect_tcp(&host, port, "proxy", config.connect_timeout)?;
            set_timeouts(&tcp, config)?;
            tunnel(&mut tcp, proxy, url)?;
            tcp
        }
        None => {
            let tcp = connect_tcp(&url.host, url.port, "server", config.connect_timeout)?;
            set_timeouts(&tcp, config)?;
            tcp
        }
    };
    if url.tls {
        tls_handshake(tcp, &url.host, &config.tls)
    } else {
        Ok(MaybeTls::Plain(tcp))
    }
}

/// Sets the configured read and write timeouts on `tcp`.
fn set_timeouts(tcp: &TcpStream, config: &ClientConfig) -> Result<(), ClientError> {
    tcp.set_read_timeout(config.read_timeout.filter(|t| !t.is_zero()))
        .and_then(|()| tcp.set_write_timeout(config.write_timeout.filter(|t| !t.is_zero())))
        .map_err(ClientError::Io)
}

/// Resolves `host` and connects to each address in turn until one accepts.
fn connect_tcp(
    host: &str,
    port: u16,
    peer: &'static str,
    timeout: Option<Duration>,
) -> Result<TcpStream, ClientError> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    let mut last_error = None;
    for addr in &addrs {
        let attempt = match timeout.filter(|t| !t.is_zero()) {
            Some(timeout) => TcpStream::connect_timeout(addr, timeout),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(err) => last_error = Some((addr.to_string(), err)),
        }
    }
    let addr = format!("{}:{port}", bracketed(host));
    Err(match last_error {
        None => ClientError::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses found"),
        },
        Some((addr, err)) if err.kind() == io::ErrorKind::ConnectionRefused => {
            ClientError::ConnectionRefused { peer, addr }
        }
        Some(_) if last_error.as_ref().is_some_and(|(_, e)| is_timeout(e)) => {
            ClientError::Timeout {
                what: format!("connecting to {peer} {addr}"),
                after: timeout,
            }
        }
        Some((addr, source)) => ClientError::Connect { peer, addr, source },
    })
}

/// Asks the proxy for a tunnel to the server of `url` (HTTP CONNECT).
fn tunnel(tcp: &mut TcpStream, proxy: &Proxy, url: &WsUrl) -> Result<(), ClientError> {
    let target = url.authority();
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = &proxy.credentials {
        request.push_str(&format!(
            "Proxy-Authorization: {}\r\n",
            basic_auth(user, password)
        ));
    }
    request.push_str("User-Agent: wssd-client\r\n\r\n");
    let after = tcp.read_timeout().ok().flatten();
    let io_error = |err: io::Error, doing: &str| proxy_io_error(&proxy.address, err, doing, after);
    tcp.write_all(request.as_bytes())
        .map_err(|e| io_error(e, "sending the CONNECT request"))?;
    let head = read_head(tcp).map_err(|e| io_error(e, "waiting for the answer to CONNECT"))?;
    let (status, reason) = parse_status_line(&head).ok_or_else(|| ClientError::ProxyProtocol {
        proxy: proxy.address.clone(),
        detail: format!(
            "answered CONNECT with something that is not HTTP: {:?}",
            String::from_utf8_lossy(&head[..head.len().min(80)])
        ),
    })?;
    match status {
        200..=299 => Ok(()),
        401 | 407 => Err(ClientError::ProxyAuth {
            proxy: proxy.address.clone(),
            status,
            reason,
            credentials_sent: proxy.credentials.is_some(),
        }),
        _ => Err(ClientError::ProxyStatus {
            proxy: proxy.address.clone(),
            status,
            reason,
        }),
    }
}

/// Maps an I/O error while talking to the proxy.
fn proxy_io_error(
    proxy: &str,
    err: io::Error,
    doing: &str,
    after: Option<Duration>,
) -> ClientError {
    if is_timeout(&err) {
        ClientError::Timeout {
            what: format!("{doing} from proxy {proxy}"),
            after,
        }
    } else {
        ClientError::ProxyProtocol {
            proxy: proxy.to_string(),
            detail: format!("{doing}: {err}"),
        }
    }
}

/// Reads an HTTP response head up to and including the blank line, one byte
/// at a time so that no byte of the tunnel behind it is consumed.
fn read_head(tcp: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_PROXY_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
        match tcp.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the proxy closed the connection",
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(head)
}

/// Parses `HTTP/1.x CODE REASON` from the first line of `head`.
fn parse_status_line(head: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next()?;
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some((status, parts.next().unwrap_or("").trim().to_string()))
}

/// Runs the TLS handshake; `host` is used for SNI and the certificate check.
fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    options: &TlsOptions,
) -> Result<MaybeTls, ClientError> {
    let connector = tls_connector(options)?;
    let after = tcp.read_timeout().ok().flatten();
    match connector.connect(host, tcp) {
        Ok(stream) => Ok(MaybeTls::Tls(Box::new(stream))),
        Err(HandshakeError::WouldBlock(_)) => Err(ClientError::Timeout {
            what: format!("in the TLS handshake with {host}"),
            after,
        }),
        Err(HandshakeError::Failure(err)) => Err(tls_error(host, &err.to_string())),
    }
}

/// Classifies a TLS failure message.
fn tls_error(host: &str, message: &str) -> ClientError {
    let verification = message.contains("certificate verify failed");
    let detail = match (verification, message.rfind('(')) {
        (true, Some(start)) => message[start..].trim_matches(['(', ')', ' ']).to_string(),
        _ => message.to_string(),
    };
    ClientError::Tls {
        host: host.to_string(),
        verification,
        detail,
    }
}

/// Builds the TLS connector: system roots, plus the CA file, or no checks.
fn tls_connector(options: &TlsOptions) -> Result<TlsConnector, ClientError> {
    let mut builder = TlsConnector::builder();
    if let Some(path) = &options.ca_file {
        for cert in load_ca_file(path)? {
            builder.add_root_certificate(cert);
        }
    }
    if options.accept_invalid_certs {
        builder.danger_accept_invalid_certs(true);
        builder.danger_accept_invalid_hostnames(true);
    }
    builder
        .build()
        .map_err(|err| ClientError::InvalidConfig(format!("cannot set up TLS: {err}")))
}

/// Reads every certificate of a PEM file.
fn load_ca_file(path: &std::path::Path) -> Result<Vec<Certificate>, ClientError> {
    let ca_error = |detail: String| ClientError::CaFile {
        path: path.display().to_string(),
        detail,
    };
    let text = fs::read_to_string(path).map_err(|err| ca_error(err.to_string()))?;
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let block = &rest[start..start + len + END.len()];
        let cert = Certificate::from_pem(block.as_bytes())
            .map_err(|err| ca_error(format!("invalid certificate: {err}")))?;
        certs.push(cert);
        rest = &rest[start + len + END.len()..];
    }
    if certs.is_empty() {
        return Err(ca_error(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_string(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Some((407, "Proxy Authentication Required".to_string()))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 200\r\n\r\n"),
            Some((200, String::new()))
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
    }

    #[test]
    fn tls_verification_errors_are_recognised() {
        let msg = "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (self-signed certificate)";
        match tls_error("localhost", msg) {
            ClientError::Tls {
                verification: true,
                detail,
                ..
            } => {
                assert_eq!(detail, "self-signed certificate")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
