//! TLS for `wss://`: loading the certificate and key named in `[tls]`,
//! and OpenSSL's record buffers.
//!
//! The handshake itself is driven by the worker, non-blocking, as a phase
//! of the connection (see `worker::conn`).
//!
//! **Record buffers.** OpenSSL reads and writes each TLS record through
//! a buffer of about 17 KiB per direction. The `openssl` crate's profiles
//! set `SSL_MODE_RELEASE_BUFFERS`, which frees them after every record:
//! an idle connection holds none, but every message costs two large
//! `malloc`/`free` pairs (about 5 % of a `wss://` echo's CPU here).
//! uWebSockets keeps them for the connection's life (31 KiB per idle
//! connection). wssd keeps them while a connection is busy and gives them
//! back once it is quiet ([`release_record_buffers`], called by the
//! worker's sweep), where OpenSSL can do that safely
//! ([`record_buffers_kept`]).

use std::path::Path;

use foreign_types_shared::ForeignTypeRef;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslMethod, SslRef};
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
    if record_buffers_kept() {
        keep_record_buffers(&mut builder);
    } else {
        log::warn!(
            "{} has no safe SSL_free_buffers (CVE-2024-4741): TLS record buffers are released after every record",
            openssl::version::version()
        );
    }
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

/// Whether sessions keep their record buffers between records (and the
/// worker gives them back when a connection is quiet): only where
/// `SSL_free_buffers` is safe. Before OpenSSL 1.1.1y, 3.0.14, 3.1.6,
/// 3.2.2 and 3.3.1 it could free a buffer that still held a record's
/// data (CVE-2024-4741); with those, and with LibreSSL, every record
/// releases its buffers as before.
pub fn record_buffers_kept() -> bool {
    free_buffers_is_safe(openssl::version::number())
}

/// See [`record_buffers_kept`]: `version` is `OPENSSL_VERSION_NUMBER`
/// (`0xMNNFFPPS` before 3.0, `0xMNN00PP0` since).
fn free_buffers_is_safe(version: i64) -> bool {
    let fixed = match version >> 20 {
        0x101 => 0x1010_119f, // 1.1.1y
        0x300 => 0x3000_00e0, // 3.0.14
        0x301 => 0x3010_0060, // 3.1.6
        0x302 => 0x3020_0020, // 3.2.2
        0x303 => 0x3030_0010, // 3.3.1
        v if (0x304..0x400).contains(&v) => 0,
        _ => return false, // older, or LibreSSL (0x2…)
    };
    version >= fixed
}

/// `SSL_CTRL_CLEAR_MODE` from `ssl.h` (`SSL_CTX_clear_mode` is a macro
/// over `SSL_CTX_ctrl`, which the `openssl` crate does not wrap).
const SSL_CTRL_CLEAR_MODE: std::ffi::c_int = 78;

/// Sessions of `builder` keep their record buffers between records.
fn keep_record_buffers(builder: &mut SslAcceptorBuilder) {
    let mode = openssl::ssl::SslMode::RELEASE_BUFFERS.bits();
    // SAFETY: `builder.as_ptr()` is the live SSL_CTX the builder owns;
    // SSL_CTRL_CLEAR_MODE only clears bits of its mode and takes no
    // pointer argument.
    #[allow(unsafe_code)]
    unsafe {
        openssl_sys::SSL_CTX_ctrl(
            builder.as_ptr(),
            SSL_CTRL_CLEAR_MODE,
            mode as std::ffi::c_long,
            std::ptr::null_mut(),
        );
    }
}

#[allow(unsafe_code)]
mod ffi {
    extern "C" {
        /// `SSL_free_buffers(3)`, which `openssl-sys` does not declare.
        pub fn SSL_free_buffers(ssl: *mut openssl_sys::SSL) -> std::ffi::c_int;
    }
}

/// Frees `ssl`'s record buffers if they hold nothing pending; true if
/// they are gone (OpenSSL allocates them again at the next record). Only
/// for sessions of an acceptor built where [`record_buffers_kept`].
pub fn release_record_buffers(ssl: &SslRef) -> bool {
    // SAFETY: `ssl.as_ptr()` is a live SSL borrowed for the call.
    // SSL_free_buffers frees only buffers that hold no unread or unsent
    // record data and returns 0 otherwise; the versions where it did not
    // check are excluded by `record_buffers_kept`.
    #[allow(unsafe_code)]
    let freed = unsafe { ffi::SSL_free_buffers(ssl.as_ptr()) };
    freed == 1
}

#[cfg(test)]
mod tests {
    use super::free_buffers_is_safe;

    #[test]
    fn free_buffers_is_used_only_where_openssl_fixed_it() {
        assert!(free_buffers_is_safe(0x3000_0160)); // 3.0.22
        assert!(free_buffers_is_safe(0x3000_00e0)); // 3.0.14
        assert!(!free_buffers_is_safe(0x3000_00d0)); // 3.0.13
        assert!(!free_buffers_is_safe(0x3020_0010)); // 3.2.1
        assert!(free_buffers_is_safe(0x3050_0000)); // 3.5.0
        assert!(free_buffers_is_safe(0x1010_119f)); // 1.1.1y
        assert!(!free_buffers_is_safe(0x1010_117f)); // 1.1.1w
        assert!(!free_buffers_is_safe(0x2000_0000)); // LibreSSL
    }
}
