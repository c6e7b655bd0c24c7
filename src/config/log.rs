//! The `[log]` table.

use std::path::{Path, PathBuf};

use super::fields::{Errors, Fields};

/// Settings of the `[log]` table.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// An `env_logger` filter such as `info` or `wssd=debug`.
    pub level: String,
    /// The file master and workers append to; `None`: standard error.
    pub file: Option<PathBuf>,
    /// Plain lines or one JSON object per line.
    pub format: LogFormat,
    /// Whether the workers log one `info` line per handshake, accepted
    /// or refused (`[log] access_log`, on by default).
    pub access_log: bool,
}

/// `log.format`: how a log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL wssd[PID ROLE]: message`
    Text,
    /// `{"time":...,"level":...,"pid":...,"role":...,"worker":...,"message":...}`
    Json,
}

pub(super) fn parse_log(mut t: Fields<'_>, errs: &mut Errors) -> LogConfig {
    let level = errs
        .opt(t.string("level"))
        .unwrap_or_else(|| "info".to_string());
    let known = ["off", "error", "warn", "info", "debug", "trace"];
    let base = level.split(',').next().unwrap_or("").trim();
    if !level.contains('=') && !known.contains(&base) {
        errs.push(t.err(
            "level",
            format!(
                "\"{level}\" is not a log level: use one of {}",
                known.join(", ")
            ),
        ));
    }
    let base = t.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let file = errs.opt(t.string("file")).map(|f| base.join(f));
    let format = match errs.opt(t.string("format")).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errs.push(t.err(
                "format",
                format!("\"{other}\" is not a log format: use \"text\" or \"json\""),
            ));
            LogFormat::Text
        }
    };
    let access_log = errs.opt(t.boolean("access_log")).unwrap_or(true);
    t.finish(errs);
    LogConfig {
        level,
        file,
        format,
        access_log,
    }
}
