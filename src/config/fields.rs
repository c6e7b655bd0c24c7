//! Reading a TOML table key by key: `Fields` takes keys and reports
//! wrong types and unknown keys (with a "did you mean"), `Errors` keeps
//! every error of one file so that one run reports them all.

use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::values::{parse_duration, parse_size};
use super::ConfigError;

/// The errors found so far in one file. Parsing goes on after an error
/// (with a stand-in value) so that one run reports them all.
#[derive(Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// The value, or `None` with the error kept.
    pub(super) fn keep<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.push(e)).ok()
    }

    /// A required value: absent is the error `missing` (kept too).
    pub(super) fn required<T>(
        &mut self,
        r: Result<Option<T>, ConfigError>,
        missing: impl FnOnce() -> ConfigError,
    ) -> Option<T> {
        match r {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.push(missing());
                None
            }
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    /// An optional value; an error counts as absent (and is kept).
    pub(super) fn opt<T>(&mut self, r: Result<Option<T>, ConfigError>) -> Option<T> {
        self.keep(r).flatten()
    }

    pub(super) fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        match ConfigError::join(self.0) {
            None => Ok(value),
            Some(e) => Err(e),
        }
    }
}

/// A TOML table being consumed key by key; whatever is left at the end is
/// an unknown key.
pub(super) struct Fields<'a> {
    pub(super) file: &'a Path,
    pub(super) prefix: String,
    pub(super) table: Table,
    /// Every key asked for: the known keys, for "did you mean" hints.
    pub(super) known: Vec<String>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(file: &'a Path, prefix: String, table: Table) -> Self {
        Fields {
            file,
            prefix,
            table,
            known: Vec::new(),
        }
    }

    pub(super) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    pub(super) fn err(&self, name: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, self.key(name), reason)
    }

    pub(super) fn take(&mut self, name: &str) -> Option<Value> {
        self.known.push(name.to_string());
        self.table.remove(name)
    }

    pub(super) fn as_table(&self, name: &str, v: Value) -> Result<Fields<'a>, ConfigError> {
        match v {
            Value::Table(t) => Ok(Fields::new(self.file, self.key(name), t)),
            other => Err(self.err(name, format!("expected a table, found {}", kind(&other)))),
        }
    }

    /// A sub-table that may be absent or wrong (then it is empty, and
    /// the error is kept).
    pub(super) fn table(&mut self, name: &str, errs: &mut Errors) -> Fields<'a> {
        let found = self
            .take(name)
            .and_then(|v| errs.keep(self.as_table(name, v)));
        found.unwrap_or_else(|| Fields::new(self.file, self.key(name), Table::new()))
    }

    pub(super) fn string(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.err(name, format!("expected a string, found {}", kind(&other))))
            }
        }
    }

    pub(super) fn boolean(&mut self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(self.err(
                name,
                format!("expected true or false, found {}", kind(&other)),
            )),
        }
    }

    /// A whole number within `min..=max`.
    pub(super) fn integer(
        &mut self,
        name: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Integer(n)) if (min..=max).contains(&n) => Ok(Some(n)),
            Some(Value::Integer(n)) => Err(self.err(
                name,
                format!("{n} is out of range: expected {min} to {max}"),
            )),
            Some(other) => Err(self.err(
                name,
                format!("expected a whole number, found {}", kind(&other)),
            )),
        }
    }

    /// A byte size: a whole number of bytes, or a string like "64KiB", "16MiB".
    pub(super) fn size(&mut self, name: &str, min: usize) -> Result<Option<usize>, ConfigError> {
        let parsed = match self.take(name) {
            None => return Ok(None),
            Some(Value::Integer(n)) if n >= 0 => n as usize,
            Some(Value::String(s)) => parse_size(&s).ok_or_else(|| {
                self.err(
                    name,
                    format!("\"{s}\" is not a size: use bytes (65536) or a string like \"64KiB\" or \"16MiB\""),
                )
            })?,
            Some(other) => {
                return Err(self.err(
                    name,
                    format!("expected a size in bytes, found {}", kind(&other)),
                ))
            }
        };
        if parsed < min {
            return Err(self.err(name, format!("{parsed} is too small: the minimum is {min}")));
        }
        Ok(Some(parsed))
    }

    /// A duration: seconds as a number, or a string like "500ms", "30s", "5m".
    pub(super) fn duration(&mut self, name: &str) -> Result<Option<Duration>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Integer(n)) if (0..1_000_000_000).contains(&n) => {
                Ok(Some(Duration::from_secs(n as u64)))
            }
            Some(Value::Integer(n)) if n > 0 => Err(self.err(
                name,
                format!("{n} seconds is out of range: at most 999999999"),
            )),
            Some(Value::Float(f)) if f >= 0.0 && f.is_finite() && f < 1e9 => {
                Ok(Some(Duration::from_secs_f64(f)))
            }
            Some(Value::String(s)) => parse_duration(&s).map(Some).ok_or_else(|| {
                self.err(
                    name,
                    format!("\"{s}\" is not a duration: use seconds (10) or a string like \"500ms\", \"30s\", \"5m\", \"1h\""),
                )
            }),
            Some(other) => Err(self.err(
                name,
                format!("expected a duration (seconds, or a string like \"30s\"), found {}", describe(&other)),
            )),
        }
    }

    pub(super) fn string_list(&mut self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => Err(self.err(
                        &format!("{name}[{i}]"),
                        format!("expected a string, found {}", kind(&other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.err(
                name,
                format!("expected a list of strings, found {}", kind(&other)),
            )),
        }
    }

    /// Reports every key nobody consumed, with the closest known key as a
    /// suggestion.
    pub(super) fn finish(self, errs: &mut Errors) {
        for k in self.table.keys() {
            let reason = match closest(k, &self.known) {
                Some(known) => format!("unknown key: did you mean `{known}`?"),
                None => "unknown key (check its spelling and docs/configuration.md)".to_string(),
            };
            errs.push(self.err(k, reason));
        }
    }
}

/// The known key closest to `unknown` by edit distance, if it is close
/// enough to be a typo (1 edit for short names, up to 3 for long ones).
pub(super) fn closest<'k>(unknown: &str, known: &'k [String]) -> Option<&'k str> {
    let limit = (unknown.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

pub(super) fn kind(v: &Value) -> &'static str {
    v.type_str()
}

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Integer(n) => format!("the negative number {n}"),
        Value::Float(f) => format!("the number {f}"),
        other => other.type_str().to_string(),
    }
}
