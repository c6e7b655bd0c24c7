//! TLS for `wss://`: loading the certificate and key named in `[tls]`
//! into the configuration every connection's session is made from.
//!
//! The sessions are rustls's, with ring's cryptography; the worker drives
//! them, non-blocking, over its own socket type (see `worker::tls`).
//! OpenSSL 3.0, which served `wss://` before, spent about twice rustls's
//! CPU on each TLS record (docs/benchmarks.md).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::{ConfigError, TlsConfig};

/// What a worker makes each connection's TLS session from.
pub type Acceptor = Arc<ServerConfig>;

/// Reads the PEM files and builds the sessions' configuration; errors
/// name the file.
///
/// TLS 1.2 and 1.3 with AEAD ciphers only (AES-GCM and ChaCha20-Poly1305,
/// ECDHE key exchange), as Mozilla's "intermediate" server profile, which
/// nginx configurations generated from that guide use, asks for.
pub fn load_acceptor(tls: &TlsConfig, source: &Path) -> Result<Acceptor, ConfigError> {
    let cert = read(&tls.cert, "tls.cert", source)?;
    let key = read(&tls.key, "tls.key", source)?;
    let not_pem = |why: String| {
        ConfigError::new(
            source,
            "tls.cert",
            format!("{} is not a PEM certificate file{why}", tls.cert.display()),
        )
    };
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(format!(": {e}")))?;
    if chain.is_empty() {
        return Err(not_pem(String::new()));
    }
    let pkey = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            ConfigError::new(
                source,
                "tls",
                format!("cannot set up TLS with {}: {e}", tls.cert.display()),
            )
        })?
        .with_no_client_auth()
        .with_single_cert(chain, pkey)
        .map_err(|e| {
            ConfigError::new(
                source,
                "tls.key",
                format!(
                    "{} does not match the certificate in {}, or cannot be used: {e} (RSA keys need 2048 to 4096 bits; EC keys P-256 or P-384)",
                    tls.key.display(),
                    tls.cert.display()
                ),
            )
        })?;
    Ok(Arc::new(with_tickets(config, tls, source)?))
}

/// Session tickets (stateless resumption), as OpenSSL and nginx issue by
/// default. The keys are made here, in the master, so the workers forked
/// from this configuration share them: a ticket one worker issued is good
/// at another that has itself issued one at least as long (ring's
/// ticketer refuses longer ones), which is the usual case. Each worker
/// rotates its keys on its own every 6 hours, after which a ticket
/// resumes only at the worker that issued it; a reload makes new keys.
fn with_tickets(
    mut config: ServerConfig,
    tls: &TlsConfig,
    source: &Path,
) -> Result<ServerConfig, ConfigError> {
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| {
        ConfigError::new(
            source,
            "tls",
            format!(
                "cannot make session ticket keys for {}: {e}",
                tls.cert.display()
            ),
        )
    })?;
    Ok(config)
}

fn read(path: &Path, key: &str, source: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(source, key, format!("cannot read {}: {e}", path.display())))
}
