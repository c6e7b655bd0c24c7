//! The `--json` object of a run's [`Summary`]: one line on stdout, for
//! scripts (`make bench` reads it).

use serde_json::{json, Map, Value};

use super::Summary;
use crate::conn::ErrorKind;
use crate::histogram::Histogram;

/// Per-connection counts are listed in the JSON up to this many
/// connections.
const MAX_PER_CONN_LISTED: usize = 10_000;

impl Summary {
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

/// Nanoseconds as microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
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
