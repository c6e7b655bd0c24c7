//! TLS for `wss://`: loading the certificate and key named in `[tls]`.
//!
//! The handshake itself is driven by the worker, non-blocking, as a phase
//! of the connection (see `worker::conn`).

use std::path::Path;

use native_tls::{Identity, TlsAcceptor};

use crate::config::{ConfigError, TlsConfig};

/// Reads the PEM files and builds an acceptor; errors name the file.
pub fn load_acceptor(tls: &TlsConfig, source: &Path) -> Result<TlsAcceptor, ConfigError> {
    let cert = read(&tls.cert, "tls.cert", source)?;
    let key = read(&tls.key, "tls.key", source)?;
    if !cert.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::new(
            source,
            "tls.cert",
            format!("{} is not a PEM certificate file", tls.cert.display()),
        ));
    }
    let identity = Identity::from_pkcs8(&cert, &key).map_err(|e| {
        ConfigError::new(
            source,
            "tls.key",
            format!(
                "cannot use {} with {}: {e} (a PEM certificate chain and its PKCS#8 or RSA private key are needed)",
                tls.key.display(),
                tls.cert.display()
            ),
        )
    })?;
    let mismatch = |e: String| {
        ConfigError::new(
            source,
            "tls.key",
            format!(
                "{} does not match the certificate in {}: {e}",
                tls.key.display(),
                tls.cert.display()
            ),
        )
    };
    let acceptor = TlsAcceptor::new(identity).map_err(|e| mismatch(e.to_string()))?;
    self_handshake(&acceptor).map_err(mismatch)?;
    Ok(acceptor)
}

/// Runs a TLS handshake against ourselves over a socket pair, both ends
/// driven in turn from this thread (the master must not start threads):
/// the only reliable check that the key signs for the certificate.
fn self_handshake(acceptor: &TlsAcceptor) -> Result<(), String> {
    use native_tls::{HandshakeError, TlsConnector};
    use std::os::unix::net::UnixStream;

    let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
    a.set_nonblocking(true).map_err(|e| e.to_string())?;
    b.set_nonblocking(true).map_err(|e| e.to_string())?;
    let connector = TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .map_err(|e| e.to_string())?;
    let mut client = match connector.connect("wssd-self-check", a) {
        Ok(_) => return Ok(()),
        Err(HandshakeError::WouldBlock(mid)) => Some(mid),
        Err(HandshakeError::Failure(e)) => return Err(e.to_string()),
    };
    let mut server = match acceptor.accept(b) {
        Ok(_) => None,
        Err(HandshakeError::WouldBlock(mid)) => Some(mid),
        Err(HandshakeError::Failure(e)) => return Err(e.to_string()),
    };
    for _ in 0..64 {
        if let Some(mid) = client.take() {
            match mid.handshake() {
                Ok(_) => {}
                Err(HandshakeError::WouldBlock(mid)) => client = Some(mid),
                Err(HandshakeError::Failure(e)) => return Err(e.to_string()),
            }
        }
        if let Some(mid) = server.take() {
            match mid.handshake() {
                Ok(_) => {}
                Err(HandshakeError::WouldBlock(mid)) => server = Some(mid),
                Err(HandshakeError::Failure(e)) => return Err(e.to_string()),
            }
        }
        if client.is_none() && server.is_none() {
            return Ok(());
        }
    }
    Err("the TLS self-check did not complete".into())
}

fn read(path: &Path, key: &str, source: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(source, key, format!("cannot read {}: {e}", path.display())))
}
