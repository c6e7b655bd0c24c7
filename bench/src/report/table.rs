//! The human-readable table of a run's [`Summary`].

use std::fmt::Write as _;

use super::Summary;
use crate::args::Mode;
use crate::conn::ErrorKind;
use crate::histogram::Histogram;

impl Summary {
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
