//! What `/status` and `/metrics` say: one snapshot of the shared
//! counters table and the master's own facts, rendered as JSON or in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Metric names follow Prometheus' naming guidelines: the `wssd_` prefix,
//! base units (`_bytes`, `_seconds`), `_total` on counters, and one
//! `worker` label, the slot number of the counters table (a replaced
//! worker's successor continues its slot's series).

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::stats::{Table, WorkerSlot, HANDSHAKE_STATUSES, MAX_SLOTS};

/// One slot's figures.
pub(super) struct WorkerFigures {
    /// The slot number (the `worker` label).
    pub slot: usize,
    /// Process id, 0 if the slot's worker is gone.
    pub pid: u64,
    /// Its generation and index within it.
    pub generation: u64,
    pub index: u64,
    pub restarts: u64,
    pub connections: u64,
    pub accepted: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// By [`HANDSHAKE_STATUSES`], then "other".
    pub handshake_failures: Vec<u64>,
    /// Outgoing messages compressed, their bytes before and after.
    pub compressed_messages: u64,
    pub compressed_bytes_in: u64,
    pub compressed_bytes_out: u64,
    /// Open connections whose output the socket did not take.
    pub send_blocked: u64,
}

/// The cluster helper's figures.
pub(super) struct ClusterFigures {
    pub enabled: bool,
    pub instance_id: String,
    pub connected: bool,
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
}

/// Everything one answer reports.
pub(super) struct Snapshot {
    pub uptime_seconds: f64,
    pub generation: u64,
    pub config_path: String,
    pub workers: Vec<WorkerFigures>,
    pub cluster: ClusterFigures,
}

/// Reads every slot that ever had a worker.
pub(super) fn read_workers(table: &Table) -> Vec<WorkerFigures> {
    let get = WorkerSlot::get;
    (0..MAX_SLOTS)
        .filter(|i| get(&table.slots[*i].generation) != 0)
        .map(|slot| {
            let s = &table.slots[slot];
            WorkerFigures {
                slot,
                pid: get(&s.pid),
                generation: get(&s.generation),
                index: get(&s.index),
                restarts: get(&s.restarts),
                connections: if get(&s.pid) == 0 {
                    0
                } else {
                    get(&s.connections)
                },
                accepted: get(&s.accepted),
                messages_in: get(&s.messages_in),
                messages_out: get(&s.messages_out),
                bytes_in: get(&s.bytes_in),
                bytes_out: get(&s.bytes_out),
                handshake_failures: s.handshake_failures.iter().map(get).collect(),
                compressed_messages: get(&s.compressed_messages),
                compressed_bytes_in: get(&s.compressed_bytes_in),
                compressed_bytes_out: get(&s.compressed_bytes_out),
                send_blocked: if get(&s.pid) == 0 {
                    0
                } else {
                    get(&s.send_blocked)
                },
            }
        })
        .collect()
}

fn status_label(i: usize) -> String {
    HANDSHAKE_STATUSES
        .get(i)
        .map_or_else(|| "other".to_string(), u16::to_string)
}

/// The `/status` document.
pub(super) fn status_json(s: &Snapshot) -> Value {
    let workers: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            let failures: Map<String, Value> = w
                .handshake_failures
                .iter()
                .enumerate()
                .map(|(i, n)| (status_label(i), json!(n)))
                .collect();
            json!({
                "worker": w.slot,
                "pid": w.pid,
                "alive": w.pid != 0,
                "generation": w.generation,
                "index": w.index,
                "connections": w.connections,
                "accepted_total": w.accepted,
                "messages_in": w.messages_in,
                "messages_out": w.messages_out,
                "bytes_in": w.bytes_in,
                "bytes_out": w.bytes_out,
                "handshake_failures": failures,
                "restarts": w.restarts,
                "send_blocked_connections": w.send_blocked,
                "compression": {
                    "messages": w.compressed_messages,
                    "bytes_in": w.compressed_bytes_in,
                    "bytes_out": w.compressed_bytes_out,
                },
            })
        })
        .collect();
    let sum = |f: fn(&WorkerFigures) -> u64| s.workers.iter().map(f).sum::<u64>();
    let failures: Map<String, Value> = (0..=HANDSHAKE_STATUSES.len())
        .map(|i| {
            let n: u64 = s
                .workers
                .iter()
                .filter_map(|w| w.handshake_failures.get(i))
                .sum();
            (status_label(i), json!(n))
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_seconds": s.uptime_seconds,
        "generation": s.generation,
        "config": s.config_path,
        "workers": workers,
        "totals": {
            "connections": sum(|w| w.connections),
            "accepted_total": sum(|w| w.accepted),
            "messages_in": sum(|w| w.messages_in),
            "messages_out": sum(|w| w.messages_out),
            "bytes_in": sum(|w| w.bytes_in),
            "bytes_out": sum(|w| w.bytes_out),
            "send_blocked_connections": sum(|w| w.send_blocked),
            "compression": {
                "messages": sum(|w| w.compressed_messages),
                "bytes_in": sum(|w| w.compressed_bytes_in),
                "bytes_out": sum(|w| w.compressed_bytes_out),
            },
            "handshake_failures": failures,
        },
        "cluster": {
            "enabled": s.cluster.enabled,
            "instance_id": s.cluster.instance_id,
            "connected": s.cluster.connected,
            "published": s.cluster.published,
            "received": s.cluster.received,
            "dropped": s.cluster.dropped,
        },
    })
}

/// One metric family: help, type, samples as (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// A per-worker metric: name, type, help, and how to read it.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerFigures) -> u64,
);

/// The `/metrics` text.
pub(super) fn metrics_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let one = |v: String| vec![(String::new(), v)];
    family(
        &mut out,
        "wssd_info",
        "gauge",
        "Build information.",
        &[(
            format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
            "1".into(),
        )],
    );
    family(
        &mut out,
        "wssd_uptime_seconds",
        "gauge",
        "Seconds since the master started.",
        &one(format!("{:.3}", s.uptime_seconds)),
    );
    family(
        &mut out,
        "wssd_generation",
        "gauge",
        "Configuration generation (1, plus one per reload).",
        &one(s.generation.to_string()),
    );
    let per_worker = |f: fn(&WorkerFigures) -> u64| -> Vec<(String, String)> {
        s.workers
            .iter()
            .map(|w| (format!("worker=\"{}\"", w.slot), f(w).to_string()))
            .collect()
    };
    let rows: [Row; 12] = [
        (
            "wssd_connections",
            "gauge",
            "Open WebSocket connections.",
            |w| w.connections,
        ),
        (
            "wssd_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
            |w| w.accepted,
        ),
        (
            "wssd_messages_received_total",
            "counter",
            "WebSocket data messages received from clients.",
            |w| w.messages_in,
        ),
        (
            "wssd_messages_sent_total",
            "counter",
            "WebSocket data messages queued to clients.",
            |w| w.messages_out,
        ),
        (
            "wssd_received_bytes_total",
            "counter",
            "Payload bytes of messages received.",
            |w| w.bytes_in,
        ),
        (
            "wssd_sent_bytes_total",
            "counter",
            "Payload bytes of messages queued to clients.",
            |w| w.bytes_out,
        ),
        (
            "wssd_compressed_messages_total",
            "counter",
            "Outgoing messages compressed with permessage-deflate (a broadcast compressed once for many receivers counts once).",
            |w| w.compressed_messages,
        ),
        (
            "wssd_compression_input_bytes_total",
            "counter",
            "Payload bytes of the compressed messages before compression.",
            |w| w.compressed_bytes_in,
        ),
        (
            "wssd_compression_output_bytes_total",
            "counter",
            "Payload bytes of the compressed messages after compression.",
            |w| w.compressed_bytes_out,
        ),
        (
            "wssd_send_blocked_connections",
            "gauge",
            "Open connections whose output the socket did not take (reading them paused until it drains).",
            |w| w.send_blocked,
        ),
        (
            "wssd_worker_restarts_total",
            "counter",
            "Times the worker of this slot was replaced after dying.",
            |w| w.restarts,
        ),
        (
            "wssd_worker_up",
            "gauge",
            "Whether the slot has a live worker.",
            |w| u64::from(w.pid != 0),
        ),
    ];
    for (name, kind, help, f) in rows {
        family(&mut out, name, kind, help, &per_worker(f));
    }
    let failures: Vec<(String, String)> = s
        .workers
        .iter()
        .flat_map(|w| {
            w.handshake_failures.iter().enumerate().map(move |(i, n)| {
                (
                    format!("worker=\"{}\",status=\"{}\"", w.slot, status_label(i)),
                    n.to_string(),
                )
            })
        })
        .collect();
    family(
        &mut out,
        "wssd_handshake_failures_total",
        "counter",
        "Refused WebSocket handshakes, by HTTP status.",
        &failures,
    );
    let c = &s.cluster;
    family(
        &mut out,
        "wssd_cluster_connected",
        "gauge",
        "Whether the cluster helper is connected to Redis.",
        &one(u64::from(c.connected).to_string()),
    );
    for (name, help, v) in [
        (
            "wssd_cluster_published_total",
            "Broadcasts published to Redis.",
            c.published,
        ),
        (
            "wssd_cluster_received_total",
            "Broadcasts received from other instances.",
            c.received,
        ),
        (
            "wssd_cluster_dropped_total",
            "Broadcasts dropped while waiting for Redis.",
            c.dropped,
        ),
    ] {
        family(&mut out, name, "counter", help, &one(v.to_string()));
    }
    out
}
