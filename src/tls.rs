//! TLS for `wss://`: loading the certificate and key named in `[tls]`.
//!
//! The handshake itself is driven by the worker, non-blocking, as a phase
//! of the connection (see `worker::conn`).

use std::path::Path;

use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::X509;

use crate::config::{ConfigError, TlsConfig};

/// Reads the PEM files and builds an acceptor; errors name the file.
///
/// The acceptor follows Mozilla's "intermediate" server profile, version 5
/// (TLS 1.2 and 1.3, AEAD ciphers only, the client's cipher order), as
/// nginx configurations generated from that guide do. It is built with
/// the `openssl` crate itself because native-tls builds its acceptor from
/// the version 4 profile, which turns TLS 1.3 off and has no way to turn
/// it back on.
pub fn load_acceptor(tls: &TlsConfig, source: &Path) -> Result<SslAcceptor, ConfigError> {
    let cert = read(&tls.cert, "tls.cert", source)?;
    let key = read(&tls.key, "tls.key", source)?;
    let not_pem = |why: String| {
        ConfigError::new(
            source,
            "tls.cert",
            format!("{} is not a PEM certificate file{why}", tls.cert.display()),
        )
    };
    let chain = X509::stack_from_pem(&cert).map_err(|e| not_pem(format!(": {e}")))?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(not_pem(String::new()));
    };
    let pkey = PKey::private_key_from_pem(&key).map_err(|e| {
        ConfigError::new(
            source,
            "tls.key",
            format!(
                "cannot use {} with {}: {e} (a PEM certificate chain and its PKCS#8, RSA or EC private key are needed)",
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
    let setup = |e: openssl::error::ErrorStack| {
        ConfigError::new(
            source,
            "tls",
            format!("cannot set up TLS with {}: {e}", tls.cert.display()),
        )
    };
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(setup)?;
    builder.set_certificate(leaf).map_err(setup)?;
    for cert in intermediates {
        builder.add_extra_chain_cert(cert.clone()).map_err(setup)?;
    }
    builder
        .set_private_key(&pkey)
        .map_err(|e| mismatch(e.to_string()))?;
    builder
        .check_private_key()
        .map_err(|e| mismatch(e.to_string()))?;
    Ok(builder.build())
}

fn read(path: &Path, key: &str, source: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(source, key, format!("cannot read {}: {e}", path.display())))
}
