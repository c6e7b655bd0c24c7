//! Log lines that name their process: `wssd[PID master]` or
//! `wssd[PID worker K]` in text, `"role"` and `"worker"` in JSON, so that
//! one journal or file of many processes reads.
//!
//! Where they go: standard error (journald under systemd), or
//! `[log] file`, which master and workers share. The file is opened with
//! `O_APPEND` and every record is one `write(2)` of a whole line, so lines
//! of different processes never interleave. SIGUSR1 makes each process
//! [`reopen`] the file by its path (logrotate moves it, then signals the
//! master, which reopens and forwards the signal to its workers).
//!
//! The role is a process-wide value: the master sets nothing, a forked
//! worker marks itself right after the fork.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::{ConfigError, LogConfig, LogFormat};
use crate::error::Error;

/// Which process is logging: 0 for the master, `k + 1` for worker `k`,
/// [`CLUSTER`] for the cluster helper.
static ROLE: AtomicUsize = AtomicUsize::new(0);

/// This process's id, kept so that a log line costs no `getpid(2)` (glibc
/// no longer caches it); set by [`init`] and again in a forked child.
static PID: AtomicU32 = AtomicU32::new(0);

/// Notes a fork: the child logs under its own pid.
pub(crate) fn forked() {
    PID.store(std::process::id(), Ordering::Relaxed);
}

fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => std::process::id(),
        pid => pid,
    }
}

/// The log file and its path, when `[log] file` is set.
static FILE: Mutex<Option<(PathBuf, File)>> = Mutex::new(None);

/// Marks this process as worker `index` in log lines.
pub(crate) fn set_worker_role(index: usize) {
    ROLE.store(index + 1, Ordering::Relaxed);
}

/// The role value of the cluster helper.
const CLUSTER: usize = usize::MAX;

/// Marks this process as the cluster helper in log lines.
pub(crate) fn set_cluster_role() {
    ROLE.store(CLUSTER, Ordering::Relaxed);
}

/// Sets up logging from `[log]`: level (`RUST_LOG` wins over it), file
/// and format. Does nothing if the program already installed a logger.
///
/// # Errors
/// [`Error::Config`] naming `log.file` (in `source`) when the file cannot
/// be opened: exit status 2, as the same failure found by `--check`.
pub(crate) fn init(log: &LogConfig, source: &Path) -> Result<(), Error> {
    forked();
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&log.level);
    if let Ok(env) = std::env::var("RUST_LOG") {
        builder.parse_filters(&env);
    }
    if let Some(path) = &log.file {
        let file = open(path).map_err(|e| {
            ConfigError::new(
                source,
                "log.file",
                format!("cannot open {} for appending: {e}", path.display()),
            )
        })?;
        if let Ok(mut f) = FILE.lock() {
            *f = Some((path.clone(), file));
        }
        builder.target(env_logger::Target::Pipe(Box::new(SharedFile)));
    }
    match log.format {
        LogFormat::Text => builder.format(|buf, record| {
            write!(
                buf,
                "{} {:<5} wssd[{} ",
                buf.timestamp_millis(),
                record.level(),
                pid()
            )?;
            match ROLE.load(Ordering::Relaxed) {
                0 => write!(buf, "master")?,
                CLUSTER => write!(buf, "cluster")?,
                k => write!(buf, "worker {}", k - 1)?,
            }
            writeln!(buf, "]: {}", record.args())
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let role = ROLE.load(Ordering::Relaxed);
            let worker = role.checked_sub(1).filter(|_| role != CLUSTER);
            let mut line = serde_json::json!({
                "time": buf.timestamp_millis().to_string(),
                "level": record.level().as_str(),
                "pid": pid(),
                "role": match (role, worker) {
                    (CLUSTER, _) => "cluster",
                    (_, Some(_)) => "worker",
                    _ => "master",
                },
                "worker": worker,
                "target": record.target(),
                "message": record.args().to_string(),
            });
            if let Some(fields) = line.as_object_mut() {
                let _ = record.key_values().visit(&mut Fields(fields));
            }
            writeln!(buf, "{line}")
        }),
    };
    let _ = builder.try_init();
    Ok(())
}

/// Adds a record's key-values (e.g. the access log's `peer`, `status`,
/// `conn`) to its JSON object, numbers and booleans as such, absent
/// values as null; a key the line has already (`time`, `message`, ...)
/// is not overwritten.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let mut json = serde_json::Value::Null;
        value.visit(JsonValue(&mut json))?;
        self.0.entry(key.as_str()).or_insert(json);
        Ok(())
    }
}

/// One key-value's value as JSON.
struct JsonValue<'a>(&'a mut serde_json::Value);

impl<'v> log::kv::VisitValue<'v> for JsonValue<'_> {
    fn visit_any(&mut self, value: log::kv::Value<'_>) -> Result<(), log::kv::Error> {
        *self.0 = value.to_string().into();
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        *self.0 = serde_json::Value::Null;
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), log::kv::Error> {
        *self.0 = value.into();
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), log::kv::Error> {
        *self.0 = value.into();
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), log::kv::Error> {
        *self.0 = value.into();
        Ok(())
    }

    fn visit_str(&mut self, value: &str) -> Result<(), log::kv::Error> {
        *self.0 = value.into();
        Ok(())
    }
}

/// Opens `path` for appending (created `0640` if missing).
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// Reopens the log file by its path (SIGUSR1); errors are logged to the
/// file still open. Does nothing when logging to standard error.
pub(crate) fn reopen() {
    let Ok(mut guard) = FILE.lock() else { return };
    let Some((path, file)) = guard.as_mut() else {
        return;
    };
    match open(path) {
        Ok(new) => *file = new,
        Err(e) => {
            let path = path.display().to_string();
            drop(guard);
            log::error!(
                "SIGUSR1: cannot reopen the log file {path}: {e}; still writing to the old one"
            );
            return;
        }
    }
    drop(guard);
    log::info!("SIGUSR1: reopened the log file");
}

/// Gives the log file to the workers' user (a master started as root
/// switches its workers to `server.user`), so that they can reopen it.
pub(crate) fn give_to(ids: Option<crate::privileges::Ids>) {
    let (Some(ids), Ok(guard)) = (ids, FILE.lock()) else {
        return;
    };
    if let Some((path, _)) = guard.as_ref() {
        if let Err(e) = nix::unistd::chown(path.as_path(), Some(ids.uid), Some(ids.gid)) {
            let path = path.display().to_string();
            drop(guard);
            log::warn!("cannot give the log file {path} to the workers' user: {e}");
        }
    }
}

/// The writer env_logger writes each formatted record to, in one call.
struct SharedFile;

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match FILE.lock().as_deref_mut() {
            Ok(Some((_, f))) => f.write(buf),
            _ => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The maximum level a reload sets from `[log] level` (its first,
/// global directive); `RUST_LOG`, when set, keeps the level it gave.
pub(crate) fn level_filter(level: &str) -> log::LevelFilter {
    if std::env::var_os("RUST_LOG").is_some() {
        return log::max_level();
    }
    level
        .split(',')
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(log::LevelFilter::Info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_become_keys_of_the_json_line() {
        let none: Option<&str> = None;
        let kvs: [(&str, log::kv::Value<'_>); 5] = [
            ("peer", "127.0.0.1:45264".into()),
            ("status", 429u16.into()),
            ("conn", log::kv::ToValue::to_value(&none)),
            ("open", true.into()),
            ("message", "not this".into()),
        ];
        let record = log::Record::builder()
            .args(format_args!("m"))
            .key_values(&kvs)
            .build();
        let mut line = serde_json::json!({ "message": "m" });
        let map = line.as_object_mut().unwrap();
        record.key_values().visit(&mut Fields(map)).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "message": "m",
                "peer": "127.0.0.1:45264",
                "status": 429,
                "conn": null,
                "open": true,
            })
        );
    }
}
