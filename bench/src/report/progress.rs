//! The progress line printed while a run goes on.

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::args::Mode;
use crate::plan::Plan;
use crate::shared::Shared;

/// The progress line on stderr.
pub struct Progress {
    enabled: bool,
    tty: bool,
    unit: &'static str,
    idle: bool,
    every: Duration,
    last_print: Option<Instant>,
    last_count: u64,
    printed: bool,
}

impl Progress {
    /// Progress for runs longer than a few seconds; every second with `\r`
    /// on a terminal, else one line every 5 seconds.
    pub fn new(plan: &Plan) -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress {
            enabled: plan.duration > Duration::from_secs(3),
            tty,
            unit: match plan.mode {
                Mode::Handshake => "handshakes",
                Mode::Broadcast => "deliveries",
                Mode::Echo | Mode::Idle => "messages",
            },
            idle: plan.mode == Mode::Idle,
            every: Duration::from_secs(if tty { 1 } else { 5 }),
            last_print: None,
            last_count: 0,
            printed: false,
        }
    }

    /// Whether a line is due; marks it printed.
    fn due(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let since = match self.last_print {
            None => {
                self.last_print = Some(now);
                return None;
            }
            Some(last) => now.duration_since(last),
        };
        if !self.enabled || since < self.every {
            return None;
        }
        self.last_print = Some(now);
        Some(since)
    }

    /// Writes one progress line.
    fn emit(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.printed = true;
    }

    /// Progress of the setup phase.
    pub fn setup(&mut self, ready: u64, failed: u64, total: u64, elapsed: Duration) {
        if elapsed < Duration::from_secs(1) || self.due().is_none() {
            return;
        }
        self.emit(&format!(
            "setup: {ready}/{total} connections ready, {failed} failed"
        ));
    }

    /// Progress of the measurement.
    pub fn tick(&mut self, shared: &Shared, elapsed: Duration) {
        let Some(since) = self.due() else { return };
        let errors = shared.errors.load(Ordering::Relaxed);
        if self.idle {
            let ready = shared.ready.load(Ordering::Relaxed);
            self.emit(&format!(
                "[{:>5.0} s] holding {ready} connections, {errors} errors",
                elapsed.as_secs_f64()
            ));
            return;
        }
        let count = shared.completed.load(Ordering::Relaxed);
        let rate = (count - self.last_count.min(count)) as f64 / since.as_secs_f64();
        self.last_count = count;
        self.emit(&format!(
            "[{:>5.0} s] {count} {} ({rate:.0}/s), {errors} errors",
            elapsed.as_secs_f64(),
            self.unit
        ));
    }

    /// Notes on stderr that the run was cut short.
    pub fn interrupted(&mut self, elapsed: Duration) {
        self.done();
        self.printed = false;
        eprintln!(
            "wssd bench: interrupted after {:.1} s, stopping (press Ctrl-C again to quit at once)",
            elapsed.as_secs_f64()
        );
    }

    /// Ends the progress output.
    pub fn done(&mut self) {
        if self.printed && self.tty {
            eprintln!();
        }
    }
}
