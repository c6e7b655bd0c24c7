//! The results of a run: merging the workers' measurements into one
//! [`Summary`] (here), the human-readable table (`table`), the `--json`
//! object (`json`) and the progress line (`progress`).

mod json;
mod progress;
mod table;

use std::io::Write as _;
use std::time::{Duration, Instant};

use super::args::Mode;
use super::conn::ErrorKind;
use super::histogram::Histogram;
use super::plan::Plan;
use super::procmem::MemSample;
use super::worker::WorkerResult;

pub use progress::Progress;

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

    /// Message bytes (uncompressed payloads) sent and received.
    fn message_bytes(&self) -> (u64, u64) {
        let size = self.size as u64;
        (self.sent * size, self.echoes * size)
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
}
