//! Why the daemon could not run, and the process exit statuses that say
//! so to a shell or to systemd.

use std::fmt;

use crate::config::ConfigError;

/// Exit status of a run-time failure (binding, forking, polling).
pub(crate) const EXIT_RUNTIME: i32 = 1;
/// Exit status of an unusable configuration.
pub(crate) const EXIT_CONFIG: i32 = 2;
/// Exit status of a worker that could not take the listening socket.
pub(crate) const EXIT_NO_LISTENER: i32 = 3;
/// Exit status of a worker that could not switch to the configured user.
pub(crate) const EXIT_PRIVILEGES: i32 = 4;
/// Exit status of a worker that panicked outside a handler (`EX_SOFTWARE`).
pub(crate) const EXIT_PANIC: i32 = 70;

/// Why the daemon could not run.
#[derive(Debug)]
pub enum Error {
    /// The configuration is unusable (exit status 2).
    Config(ConfigError),
    /// Something at run time failed, e.g. binding the address (status 1).
    Runtime(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration error: {e}"),
            Error::Runtime(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl Error {
    /// The process exit status for this error: 2 for [`Error::Config`],
    /// 1 for [`Error::Runtime`].
    #[must_use]
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Runtime(_) => EXIT_RUNTIME,
        }
    }

    /// A run-time error: `what` failed with `e`.
    pub(crate) fn runtime(what: &str, e: impl fmt::Display) -> Error {
        Error::Runtime(format!("{what}: {e}"))
    }
}
