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
    TlsAcceptor::new(identity).map_err(|e| {
        ConfigError::new(
            source,
            "tls.key",
            format!(
                "{} does not match {}: {e}",
                tls.key.display(),
                tls.cert.display()
            ),
        )
    })
}

fn read(path: &Path, key: &str, source: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(source, key, format!("cannot read {}: {e}", path.display())))
}
