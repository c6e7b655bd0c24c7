//! Self-signed certificates made at test time with openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::require_openssl;
use super::TempDir;

/// The subjectAltName of the default certificate.
pub const LOCAL_SAN: &str = "IP:127.0.0.1,DNS:localhost";

/// A certificate (PEM, also usable as its own CA file) and its key.
pub struct Cert {
    /// The certificate.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Makes `dir/NAME.pem` and `dir/NAME.key`: a self-signed certificate for
/// `san` (e.g. [`LOCAL_SAN`]) with the serial number `serial` (hex) if given.
pub fn make_cert(dir: &Path, name: &str, san: &str, serial: Option<&str>) -> Cert {
    require_openssl();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-days", "2", "-subj", "/CN=wssd-test"])
        .arg("-addext")
        .arg(format!("subjectAltName={san}"));
    if let Some(serial) = serial {
        cmd.arg("-set_serial").arg(format!("0x{serial}"));
    }
    let out = cmd
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Cert { cert, key }
}

/// A certificate in a temp dir of its own.
pub struct Certs {
    _dir: TempDir,
    /// Certificate (PEM); also usable as the CA file.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl Certs {
    /// A certificate valid for 127.0.0.1 and localhost.
    pub fn generate() -> Certs {
        Self::generate_for(LOCAL_SAN)
    }

    /// A certificate with this subjectAltName list.
    pub fn generate_for(san: &str) -> Certs {
        let dir = TempDir::new();
        let Cert { cert, key } = make_cert(dir.path(), "cert", san, None);
        Certs {
            _dir: dir,
            cert,
            key,
        }
    }
}
