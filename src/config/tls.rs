//! The `[tls]` table.

use std::path::{Path, PathBuf};

use super::fields::{Errors, Fields};

/// Settings of the `[tls]` table.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8 or RSA).
    pub key: PathBuf,
}

/// The `[tls]` table; `None` after an error.
pub(super) fn parse_tls(mut t: Fields<'_>, errs: &mut Errors) -> Option<TlsConfig> {
    let cert = errs.required(t.string("cert"), || {
        t.err("cert", "missing: name the PEM certificate chain file")
    });
    let key = errs.required(t.string("key"), || {
        t.err("key", "missing: name the PEM private key file")
    });
    let base = t.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    t.finish(errs);
    Some(TlsConfig {
        cert: base.join(cert?),
        key: base.join(key?),
    })
}
