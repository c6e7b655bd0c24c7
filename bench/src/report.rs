//! The results of a run: merging the workers' measurements, the
//! human-readable table, the `--json` object and the progress line.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::args::Mode;
use super::conn::ErrorKind;
use super::histogram::Histogram;
use super::plan::Plan;
use super::procmem::MemSample;
use super::shared::Shared;
use super::worker::WorkerResult;

/// Per-connection counts are listed in the JSON up to this many
/// connections.
const MAX_PER_CONN_LISTED: usize = 10_000;

/// Server memory before and while holding the connections.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// The master's pid.
    pub pid: i32,
    /// Before any connection.
    pub baseline: MemSample,
    /// While the connections were open.
    pub holding: MemSample,
}

/// Broadcast delivery statistics.
#[derive(Debug, Clone, Default)]
pub struct Broadcast {
    /// Receivers (connections, the sender included).
    pub receivers: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received, all receivers together.
    pub deliveries: u64,
    /// Messages that reached every receiver.
    pub complete: u64,
    /// Delay from send to the last receiver, complete messages only (ns).
    pub last_delay: Histogram,
}

/// Everything a run measured.
#[derive(Debug)]
pub struct Summary {
    mode: Mode,
    url: String,
    connections: u32,
    threads: u32,
    size: usize,
    window: u32,
    text: bool,
    duration: Duration,
    /// Time the rates are computed over.
    elapsed: Duration,
    /// Connections established for the measurement.
    pub connected: u64,
    /// Per `--cpu-pid`: its tree's CPU seconds over the window.
    pub server_cpu: Vec<(i32, f64)>,
    echoes: u64,
    sent: u64,
    handshakes: u64,
    latency: Histogram,
    per_conn: Vec<u64>,
    errors: [u64; ErrorKind::ALL.len()],
    /// The first error messages.
    pub samples: Vec<String>,
    memory: Option<Memory>,
    broadcast: Option<Broadcast>,
    /// Socket bytes written and read, all connections together.
    wire_out: u64,
    wire_in: u64,
    /// `--deflate`: the first answer accepted, canonical form.
    deflate: Option<Option<String>>,
    /// Broadcast over several URLs: per URL, its receivers and deliveries.
    per_endpoint: Vec<EndpointCount>,
    notes: Vec<String>,
}

/// What one URL's connections did (broadcast over several URLs).
#[derive(Debug, Clone)]
struct EndpointCount {
    url: String,
    receivers: u64,
    deliveries: u64,
}

impl Summary {
    /// Merges the workers' results of a run measured from `start` to
    /// `stopped`.
    pub fn new(plan: &Plan, results: &[WorkerResult], start: Instant, stopped: Instant) -> Self {
        let mut latency = Histogram::new();
        let mut errors = [0; ErrorKind::ALL.len()];
        let mut per_conn: Vec<(u32, u64)> = Vec::new();
        let mut last_done: Option<Instant> = None;
        for r in results {
            latency.merge(&r.latency);
            for (total, n) in errors.iter_mut().zip(r.errors) {
                *total += n;
            }
            per_conn.extend_from_slice(&r.per_conn);
            last_done = last_done.max(r.last_done);
        }
        per_conn.sort_unstable();
        let n = plan.endpoints.len();
        let mut per_endpoint: Vec<EndpointCount> = plan
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointCount {
                url: e.url.clone(),
                receivers: results
                    .iter()
                    .filter_map(|r| r.ready_per_endpoint.get(i))
                    .sum(),
                deliveries: per_conn
                    .iter()
                    .filter(|(id, _)| *id as usize % n == i)
                    .map(|(_, c)| c)
                    .sum(),
            })
            .collect();
        if n < 2 {
            per_endpoint.clear();
        }
        let window = stopped.duration_since(start);
        let elapsed = match (plan.mode, last_done) {
            (Mode::Idle, _) | (_, None) => window,
            (_, Some(t)) if t > start => t.duration_since(start),
            _ => window,
        };
        Summary {
            mode: plan.mode,
            url: plan.url.clone(),
            connections: plan.connections,
            threads: plan.threads,
            size: plan.size,
            window: plan.window,
            text: plan.text,
            duration: plan.duration,
            elapsed,
            connected: 0,
            server_cpu: Vec::new(),
            echoes: results.iter().map(|r| r.echoes).sum(),
            sent: results.iter().map(|r| r.sent).sum(),
            handshakes: results.iter().map(|r| r.handshakes).sum(),
            latency,
            per_conn: per_conn.into_iter().map(|(_, n)| n).collect(),
            errors,
            samples: Vec::new(),
            memory: None,
            broadcast: None,
            wire_out: results.iter().map(|r| r.wire_out).sum(),
            wire_in: results.iter().map(|r| r.wire_in).sum(),
            deflate: plan
                .deflate
                .then(|| results.iter().find_map(|r| r.deflate_answer.clone())),
            per_endpoint,
            notes: plan.notes.clone(),
        }
    }

    /// Records the memory samples, if a pid was given.
    pub fn set_memory(
        &mut self,
        pid: Option<i32>,
        baseline: Option<MemSample>,
        holding: Option<MemSample>,
    ) {
        if let (Some(pid), Some(baseline), Some(holding)) = (pid, baseline, holding) {
            self.memory = Some(Memory {
                pid,
                baseline,
                holding,
            });
        }
    }

    /// Computes the broadcast statistics from the per-message tables.
    pub fn finish_broadcast(&mut self, plan: &Plan, results: &[WorkerResult], receivers: u64) {
        if plan.mode != Mode::Broadcast {
            return;
        }
        let len = results.iter().map(|r| r.bcast.len()).max().unwrap_or(0);
        let mut merged = vec![(0u64, 0u64); len];
        for r in results {
            for (m, (count, delay)) in merged.iter_mut().zip(&r.bcast) {
                m.0 += count;
                m.1 = m.1.max(*delay);
            }
        }
        let mut b = Broadcast {
            receivers,
            sent: self.sent,
            deliveries: self.echoes,
            ..Broadcast::default()
        };
        for (count, delay) in merged {
            if count >= receivers {
                b.complete += 1;
                b.last_delay.record(delay);
            }
        }
        self.broadcast = Some(b);
    }

    /// Adds a remark to the report.
    pub fn add_note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Total error count.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Completed units per second.
    fn rate(&self, count: u64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            count as f64 / secs
        } else {
            0.0
        }
    }

    /// Memory per connection in bytes: (RSS, PSS), from the increase.
    fn memory_per_conn(&self) -> Option<(f64, f64)> {
        let m = self.memory?;
        let n = self.connected.max(1) as f64;
        let rss = (m.holding.rss_kib as f64 - m.baseline.rss_kib as f64) * 1024.0 / n;
        let pss = (m.holding.pss_kib as f64 - m.baseline.pss_kib as f64) * 1024.0 / n;
        Some((rss, pss))
    }

    /// Prints the summary on stdout (JSON or table) and error samples on
    /// stderr.
    pub fn print(&self, json: bool) {
        let text = if json {
            self.to_json()
        } else {
            self.to_table()
        };
        let mut out = std::io::stdout().lock();
        // Nothing useful can be done if stdout is gone.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        if !self.samples.is_empty() {
            eprintln!("wssd bench: first errors:");
            for s in &self.samples {
                eprintln!("  {s}");
            }
        }
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let kind = if self.text { "text" } else { "binary" };
        let _ = writeln!(t, "wssd bench: {} {}", self.mode.name(), self.url);
        let _ = writeln!(
            t,
            "  connections {} ({} connected), threads {}, size {} B {kind}, window {}, duration {:.1} s",
            self.connections,
            self.connected,
            self.threads,
            self.size,
            self.window,
            self.duration.as_secs_f64()
        );
        for note in &self.notes {
            let _ = writeln!(t, "  note: {note}");
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "  {:<18}{:.3} s", "elapsed", self.elapsed.as_secs_f64());
        match self.mode {
            Mode::Handshake => {
                let _ = writeln!(
                    t,
                    "  {:<18}{} ({:.1}/s)",
                    "handshakes",
                    self.handshakes,
                    self.rate(self.handshakes)
                );
                let _ = writeln!(t, "  {:<18}{}", "echoes verified", self.echoes);
            }
            Mode::Broadcast => self.broadcast_rows(&mut t),
            Mode::Idle => {
                let _ = writeln!(
                    t,
                    "  {:<18}{} connections for {:.3} s ({} first echoes verified)",
                    "held",
                    self.connected,
                    self.elapsed.as_secs_f64(),
                    self.echoes
                );
            }
            Mode::Echo => {
                let mb = self.rate(self.echoes) * self.size as f64 / 1e6;
                let _ = writeln!(
                    t,
                    "  {:<18}{} of {} sent ({:.1} msg/s, {mb:.2} MB/s each way)",
                    "messages",
                    self.echoes,
                    self.sent,
                    self.rate(self.echoes)
                );
            }
        }
        let label = match self.mode {
            Mode::Handshake => "cycle time",
            Mode::Broadcast => "delivery delay",
            Mode::Idle => "first echo",
            Mode::Echo => "latency",
        };
        let _ = writeln!(t, "  {:<18}{}", label, latency_row(&self.latency));
        if let (Some(min), Some(max)) = (self.per_conn.iter().min(), self.per_conn.iter().max()) {
            let _ = writeln!(t, "  {:<18}min {min}, max {max}", "per connection");
        }
        self.memory_rows(&mut t);
        self.cpu_rows(&mut t);
        self.wire_rows(&mut t);
        let _ = writeln!(t, "  {:<18}{}", "errors", self.error_total());
        for (kind, n) in ErrorKind::ALL.iter().zip(self.errors) {
            if n > 0 {
                let _ = writeln!(t, "    {:<16}{n}", kind.name());
            }
        }
        t
    }

    /// Broadcast rows of the table.
    fn broadcast_rows(&self, t: &mut String) {
        let Some(b) = &self.broadcast else { return };
        let _ = writeln!(
            t,
            "  {:<18}{} to {} receivers",
            "messages sent", b.sent, b.receivers
        );
        let _ = writeln!(
            t,
            "  {:<18}{} of {} ({:.1}/s)",
            "deliveries",
            b.deliveries,
            b.sent * b.receivers,
            self.rate(b.deliveries)
        );
        let _ = writeln!(
            t,
            "  {:<18}{} messages reached everyone",
            "complete", b.complete
        );
        for e in &self.per_endpoint {
            let _ = writeln!(
                t,
                "  {:<18}{}: {} receivers, {} of {} deliveries",
                "per URL",
                e.url,
                e.receivers,
                e.deliveries,
                b.sent * e.receivers
            );
        }
        let _ = writeln!(
            t,
            "  {:<18}p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            "to last receiver",
            ms(b.last_delay.quantile(0.5)),
            ms(b.last_delay.quantile(0.99)),
            ms(b.last_delay.max())
        );
    }

    /// Message bytes (uncompressed payloads) sent and received.
    fn message_bytes(&self) -> (u64, u64) {
        let size = self.size as u64;
        (self.sent * size, self.echoes * size)
    }

    /// Compression and bytes-on-the-wire rows of the table.
    fn wire_rows(&self, t: &mut String) {
        if let Some(answer) = &self.deflate {
            let answer = answer.as_deref().unwrap_or("(no connection negotiated it)");
            let _ = writeln!(t, "  {:<18}{answer}", "deflate");
        }
        let (msg_out, msg_in) = self.message_bytes();
        let _ = writeln!(
            t,
            "  {:<18}sent {} B ({} B of messages, {}), received {} B ({} B of messages, {})",
            "on the wire",
            self.wire_out,
            msg_out,
            ratio(self.wire_out, msg_out),
            self.wire_in,
            msg_in,
            ratio(self.wire_in, msg_in)
        );
    }

    /// Memory rows of the table.
    fn memory_rows(&self, t: &mut String) {
        let (Some(m), Some((rss, pss))) = (self.memory, self.memory_per_conn()) else {
            return;
        };
        let _ = writeln!(
            t,
            "  {:<18}pid {} ({} processes): RSS {} -> {} KiB, PSS {} -> {} KiB",
            "server memory",
            m.pid,
            m.holding.processes,
            m.baseline.rss_kib,
            m.holding.rss_kib,
            m.baseline.pss_kib,
            m.holding.pss_kib
        );
        let _ = writeln!(
            t,
            "  {:<18}RSS {rss:.0} B, PSS {pss:.0} B",
            "memory/connection"
        );
    }

    /// The `--json` object (one line).
    pub fn to_json(&self) -> String {
        let mut j = json!({
            "mode": self.mode.name(),
            "url": self.url,
            "connections": self.connections,
            "connected": self.connected,
            "threads": self.threads,
            "size": self.size,
            "window": self.window,
            "text": self.text,
            "duration_s": num(self.duration.as_secs_f64()),
            "elapsed_s": num(self.elapsed.as_secs_f64()),
            "messages": self.echoes,
            "messages_sent": self.sent,
            "messages_per_s": num(self.rate(self.echoes)),
            "bytes_per_s": num(self.rate(self.echoes) * self.size as f64),
            "handshakes": self.handshakes,
            "handshakes_per_s": num(self.rate(self.handshakes)),
            "latency_us": latency_json(&self.latency),
            "per_connection_min": self.per_conn.iter().min().copied().unwrap_or(0),
            "per_connection_max": self.per_conn.iter().max().copied().unwrap_or(0),
            "memory": self.memory_json(),
            "server_cpu_s": self
                .server_cpu
                .iter()
                .map(|(pid, secs)| (pid.to_string(), num(*secs)))
                .collect::<Map<String, Value>>(),
            "broadcast": self.broadcast_json(),
            "wire": self.wire_json(),
            "deflate": match &self.deflate {
                None => Value::Null,
                Some(answer) => json!({ "offer": crate::deflate::OFFER, "answer": answer }),
            },
            "errors": self.error_total(),
            "error_counts": ErrorKind::ALL
                .iter()
                .zip(self.errors)
                .map(|(kind, n)| (kind.name().to_string(), Value::from(n)))
                .collect::<Map<String, Value>>(),
            "error_samples": self.samples,
            "notes": self.notes,
        });
        if self.per_conn.len() <= MAX_PER_CONN_LISTED {
            j["per_connection"] = json!(self.per_conn);
        }
        let mut out = j.to_string();
        out.push('\n');
        out
    }

    /// `server CPU` rows (`--cpu-pid`): each tree's CPU seconds over the
    /// window and the units (messages, or handshakes) per CPU-second.
    fn cpu_rows(&self, t: &mut String) {
        let units = match self.mode {
            Mode::Handshake => self.handshakes,
            _ => self.echoes,
        };
        for (pid, secs) in &self.server_cpu {
            let per = if *secs > 0.0 {
                units as f64 / secs
            } else {
                0.0
            };
            let _ = writeln!(
                t,
                "  {:<18}pid {pid}: {secs:.3} s ({per:.0} per CPU-s)",
                "server CPU"
            );
        }
    }

    /// The `memory` JSON value.
    fn memory_json(&self) -> Value {
        let (Some(m), Some((rss, pss))) = (self.memory, self.memory_per_conn()) else {
            return Value::Null;
        };
        json!({
            "pid": m.pid,
            "processes": m.holding.processes,
            "baseline_rss_kib": m.baseline.rss_kib,
            "baseline_pss_kib": m.baseline.pss_kib,
            "holding_rss_kib": m.holding.rss_kib,
            "holding_pss_kib": m.holding.pss_kib,
            "rss_per_connection_bytes": num(rss),
            "pss_per_connection_bytes": num(pss),
        })
    }

    /// The `wire` JSON value: socket bytes next to message bytes.
    fn wire_json(&self) -> Value {
        let (msg_out, msg_in) = self.message_bytes();
        json!({
            "sent_bytes": self.wire_out,
            "received_bytes": self.wire_in,
            "message_bytes_sent": msg_out,
            "message_bytes_received": msg_in,
            "sent_bytes_per_s": num(self.rate(self.wire_out)),
            "received_bytes_per_s": num(self.rate(self.wire_in)),
        })
    }

    /// The `broadcast` JSON value.
    fn broadcast_json(&self) -> Value {
        let Some(b) = &self.broadcast else {
            return Value::Null;
        };
        json!({
            "receivers": b.receivers,
            "messages_sent": b.sent,
            "deliveries": b.deliveries,
            "expected_deliveries": b.sent * b.receivers,
            "deliveries_per_s": num(self.rate(b.deliveries)),
            "complete_messages": b.complete,
            "per_url": self.per_endpoint.iter().map(|e| json!({
                "url": e.url,
                "receivers": e.receivers,
                "deliveries": e.deliveries,
                "expected_deliveries": b.sent * e.receivers,
            })).collect::<Vec<_>>(),
            "last_receiver_delay_us": {
                "p50": num(us(b.last_delay.quantile(0.5))),
                "p99": num(us(b.last_delay.quantile(0.99))),
                "max": num(us(b.last_delay.max())),
            },
        })
    }
}

/// A measurement as a JSON number rounded to 3 decimals (`null` when not
/// finite, e.g. a rate over no time).
fn num(value: f64) -> Value {
    serde_json::Number::from_f64((value * 1000.0).round() / 1000.0)
        .map_or(Value::Null, Value::Number)
}

/// `wire` as a percentage of `messages`, for the table.
fn ratio(wire: u64, messages: u64) -> String {
    if messages == 0 {
        return "-".into();
    }
    format!("{:.1} %", wire as f64 * 100.0 / messages as f64)
}

/// Nanoseconds as milliseconds.
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Nanoseconds as microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// Latency percentiles for the table.
fn latency_row(h: &Histogram) -> String {
    if h.count() == 0 {
        return "no samples".into();
    }
    format!(
        "mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms",
        ms(h.mean()),
        ms(h.quantile(0.5)),
        ms(h.quantile(0.9)),
        ms(h.quantile(0.99)),
        ms(h.quantile(0.999)),
        ms(h.max())
    )
}

/// Latency percentiles as a JSON object (microseconds).
fn latency_json(h: &Histogram) -> Value {
    json!({
        "count": h.count(),
        "mean": num(us(h.mean())),
        "p50": num(us(h.quantile(0.5))),
        "p90": num(us(h.quantile(0.9))),
        "p99": num(us(h.quantile(0.99))),
        "p999": num(us(h.quantile(0.999))),
        "max": num(us(h.max())),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_are_rounded_and_infinity_is_null() {
        assert_eq!(num(1.23456).to_string(), "1.235");
        assert_eq!(num(f64::INFINITY), Value::Null);
        assert_eq!(num(f64::NAN), Value::Null);
    }
}
