//! `ConfigError`: a configuration that cannot be used, naming the file,
//! the full key and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file being read.
    pub file: PathBuf,
    /// The dotted key, e.g. `server.workers`; empty for whole-file errors.
    pub key: String,
    /// What is wrong and, where it helps, what would be right.
    pub reason: String,
    /// Further errors found in the same file: every problem is reported
    /// at once, not one per attempt.
    pub others: Vec<ConfigError>,
}

impl ConfigError {
    /// Builds an error about `key` in `file`.
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
            others: Vec::new(),
        }
    }

    /// Joins `errors` into one (the first, carrying the rest in `others`);
    /// `None` when there is none.
    pub fn join(errors: impl IntoIterator<Item = ConfigError>) -> Option<ConfigError> {
        let mut flat = Vec::new();
        for mut e in errors {
            let nested = std::mem::take(&mut e.others);
            flat.push(e);
            flat.extend(nested);
        }
        let mut iter = flat.into_iter();
        let mut first = iter.next()?;
        first.others = iter.collect();
        Some(first)
    }

    /// This error and the others, in the order they were found.
    pub fn all(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(self.others.iter())
    }

    /// `key `server.workers`: reason`, or the reason alone.
    fn fmt_item(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "key `{}`: {}", self.key, self.reason)
        }
    }
}

impl fmt::Display for ConfigError {
    /// One error: `FILE: key `K`: REASON`. Several: `FILE: N errors:`
    /// and one indented line per error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if self.others.is_empty() {
            return self.fmt_item(f);
        }
        write!(f, "{} errors:", self.others.len() + 1)?;
        for e in self.all() {
            f.write_str("\n  ")?;
            e.fmt_item(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
