//! Whether a valid configuration can start on this host, checked without
//! starting it: the listen address belongs to this machine (a test bind
//! on port 0 of the same IP, so the live port is never taken), a port
//! below the unprivileged limit may be bound by this process, and the pid
//! file can be written. `wssd --check` and the start run these checks, so
//! a config that passes `--check` does not fail at these steps later.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use nix::unistd::{access, AccessFlags};

use crate::config::{Config, ConfigError};

/// The Linux capability number of `CAP_NET_BIND_SERVICE`.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// Every problem `config` would meet on this host, each naming its key;
/// `listen` is checked only with `bind_listen` (not for a socket passed
/// by systemd or an upgrading master).
pub fn check(config: &Config, bind_listen: bool) -> Vec<ConfigError> {
    let file = &config.source;
    let mut errors = Vec::new();
    if bind_listen {
        if let Err(reason) = check_listen(config.server.listen) {
            errors.push(ConfigError::new(file, "server.listen", reason));
        }
    }
    if let Some(path) = &config.server.pid_file {
        if let Err(reason) = check_writable(path, "/run/wssd") {
            errors.push(ConfigError::new(file, "server.pid_file", reason));
        }
    }
    if let Some(path) = &config.log.file {
        if let Err(reason) = check_writable(path, "/var/log/wssd") {
            errors.push(ConfigError::new(file, "log.file", reason));
        }
    }
    errors
}

/// Binds port 0 of the address's IP (and drops it at once), then checks
/// the privilege a low port needs.
fn check_listen(addr: SocketAddr) -> Result<(), String> {
    TcpListener::bind(SocketAddr::new(addr.ip(), 0)).map_err(|e| {
        format!(
            "{addr} cannot be bound on this host ({e}): is {} an address of this machine?",
            addr.ip()
        )
    })?;
    let port = addr.port();
    match unprivileged_port_start() {
        Some(limit) if port != 0 && port < limit && !has_capability(CAP_NET_BIND_SERVICE) => {
            Err(format!(
                "port {port} is below {limit}, and this process has no CAP_NET_BIND_SERVICE to bind it: \
                 start wssd as root or with that capability (the systemd unit grants it), or use a port of {limit} or more"
            ))
        }
        _ => Ok(()),
    }
}

/// The message for a failed bind of the live `server.listen` address
/// (`step` is the call that failed): names the key, the address and,
/// for the usual causes, what to do.
pub fn listen_failed(addr: SocketAddr, step: &str, e: nix::Error) -> String {
    let hint = match e {
        nix::Error::EADDRINUSE => " (another process, perhaps another wssd, holds this address)",
        nix::Error::EACCES => " (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
        _ => "",
    };
    format!("key `server.listen`: cannot listen on {addr}: {step}: {e}{hint}")
}

/// The lowest port any process may bind; `None` when it cannot be read
/// (e.g. under systemd's `ProcSubset=pid`), then nothing is assumed.
fn unprivileged_port_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether capability `cap` is in this process's effective set; `true`
/// when that cannot be read, so that no start is refused on a guess.
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|set| set & (1 << cap) != 0)
}

/// The file's directory exists and the file (or, while there is none,
/// the directory) is writable; `unit_dir` is the directory the systemd
/// unit provides for such files.
fn check_writable(path: &Path, unit_dir: &str) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) => {
            return Err(format!(
                "the directory {} cannot be used ({e}): create it, or choose a directory wssd may write \
                 (the systemd unit provides {unit_dir})",
                dir.display()
            ))
        }
        Ok(m) if !m.is_dir() => return Err(format!("{} is not a directory", dir.display())),
        Ok(_) => {}
    }
    let target = if path.exists() { path } else { dir };
    access(target, AccessFlags::W_OK)
        .map_err(|e| format!("{} is not writable by this process ({e})", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listen_passes_and_a_foreign_address_fails() {
        assert_eq!(check_listen("127.0.0.1:0".parse().unwrap()), Ok(()));
        // TEST-NET-3 (RFC 5737) is on no interface of a test machine.
        let e = check_listen("203.0.113.7:8080".parse().unwrap()).unwrap_err();
        assert!(e.contains("203.0.113.7"), "{e}");
    }

    #[test]
    fn pid_file_in_a_missing_directory_fails() {
        let e =
            check_writable(Path::new("/nonexistent-wssd-dir/wssd.pid"), "/run/wssd").unwrap_err();
        assert!(e.contains("/nonexistent-wssd-dir"), "{e}");
        assert_eq!(
            check_writable(&std::env::temp_dir().join("wssd-x.pid"), "/run/wssd"),
            Ok(())
        );
    }
}
