//! An `exec` route's keys (docs/exec.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::defaults;
use super::fields::{kind, Errors, Fields};

/// How an `exec` route runs its program (see docs/exec.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The program and its arguments; no shell is involved.
    pub command: Vec<String>,
    /// The program's working directory; the daemon's when `None`.
    pub working_dir: Option<PathBuf>,
    /// Variables set for the program, over the CGI ones.
    pub env: Vec<(String, String)>,
    /// Names of the daemon's variables passed on (besides `PATH`).
    pub pass_env: Vec<String>,
    /// Lines or binary messages.
    pub mode: ExecMode,
    /// Programs of this route one worker runs at most; `None` = no limit.
    pub max_processes: Option<usize>,
    /// Time between closing stdin and SIGTERM, and SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// How an `exec` program's output becomes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// A text message per line each way.
    Lines,
    /// Bytes both ways: each read from stdout is one binary message.
    Binary,
}

/// The keys of an `exec` route (the route's other keys are taken
/// already); `None` when one is wrong (every error is kept).
pub(super) fn parse_exec(t: &mut Fields<'_>, errs: &mut Errors) -> Option<ExecConfig> {
    let command = errs.required(t.string_list("command"), || {
        t.err(
            "command",
            "missing: an exec route needs command = [\"/path/to/program\", \"arg\", ...]",
        )
    });
    let command = command.and_then(|command| {
        let problem = match command.first() {
            None => Some(t.err("command", "is empty: name the program to run")),
            Some(p) if p.is_empty() => {
                Some(t.err("command[0]", "is empty: name the program to run"))
            }
            Some(_) if command.iter().any(|a| a.contains('\0')) => {
                Some(t.err("command", "contains a NUL byte"))
            }
            Some(_) => None,
        };
        match problem {
            Some(e) => {
                errs.push(e);
                None
            }
            None => Some(command),
        }
    });
    let base = t.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let working_dir = errs.opt(t.string("working_dir")).map(|d| base.join(d));
    let env = parse_exec_env(t, errs);
    let pass_env = errs.opt(t.string_list("pass_env")).unwrap_or_default();
    let mode = match errs.opt(t.string("mode")).as_deref() {
        None | Some("lines") => Some(ExecMode::Lines),
        Some("binary") => Some(ExecMode::Binary),
        Some(other) => {
            errs.push(t.err(
                "mode",
                format!("\"{other}\" is not a mode: use \"lines\" or \"binary\""),
            ));
            None
        }
    };
    let max_processes = errs
        .opt(t.integer("max_processes", 1, 1_000_000))
        .map(|n| n as usize);
    let kill_grace = errs
        .opt(t.duration("kill_grace"))
        .unwrap_or(Duration::from_secs(defaults::KILL_GRACE_SECS));
    Some(ExecConfig {
        command: command?,
        working_dir,
        env: env?,
        pass_env,
        mode: mode?,
        max_processes,
        kill_grace,
    })
}

/// An exec route's `env` table: names and values as the program gets
/// them; `None` when one is wrong (every error is kept).
pub(super) fn parse_exec_env(
    t: &mut Fields<'_>,
    errs: &mut Errors,
) -> Option<Vec<(String, String)>> {
    let Some(v) = t.take("env") else {
        return Some(Vec::new());
    };
    let mut table = errs.keep(t.as_table("env", v))?;
    let mut env = Vec::new();
    let mut good = true;
    for (name, value) in std::mem::take(&mut table.table) {
        let good_name = !name.is_empty() && !name.contains('=') && !name.contains('\0');
        match value {
            Value::String(s) if good_name && !s.contains('\0') => env.push((name, s)),
            Value::String(_) => {
                good = false;
                errs.push(table.err(
                    &name,
                    "a variable name may not be empty or contain '=', and neither name nor value a NUL byte",
                ));
            }
            other => {
                good = false;
                errs.push(table.err(&name, format!("expected a string, found {}", kind(&other))));
            }
        }
    }
    good.then_some(env)
}
