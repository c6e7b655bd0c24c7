//! Log lines that name their process: `wssd[PID master]` or
//! `wssd[PID worker K]`, so that one journal of many processes reads.
//!
//! The role is a process-wide value: the master sets nothing, a forked
//! worker marks itself right after the fork.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which process is logging: 0 for the master, `k + 1` for worker `k`,
/// [`CLUSTER`] for the cluster helper.
static ROLE: AtomicUsize = AtomicUsize::new(0);

/// Marks this process as worker `index` in log lines.
pub(crate) fn set_worker_role(index: usize) {
    ROLE.store(index + 1, Ordering::Relaxed);
}

/// The role value of the cluster helper.
const CLUSTER: usize = usize::MAX;

/// Marks this process as the cluster helper in log lines.
pub(crate) fn set_cluster_role() {
    ROLE.store(CLUSTER, Ordering::Relaxed);
}

/// Sets up logging with `level` (`[log] level`, `env_logger` syntax);
/// `RUST_LOG` wins over it. Does nothing if the program already installed
/// a logger.
pub(crate) fn init(level: &str) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(level);
    if let Ok(env) = std::env::var("RUST_LOG") {
        builder.parse_filters(&env);
    }
    builder.format(|buf, record| {
        let role = match ROLE.load(Ordering::Relaxed) {
            0 => "master".to_string(),
            CLUSTER => "cluster".to_string(),
            k => format!("worker {}", k - 1),
        };
        writeln!(
            buf,
            "{} {:<5} wssd[{} {}]: {}",
            buf.timestamp_millis(),
            record.level(),
            std::process::id(),
            role,
            record.args()
        )
    });
    let _ = builder.try_init();
}

/// The maximum level a reload sets from `[log] level` (its first,
/// global directive); `RUST_LOG`, when set, keeps the level it gave.
pub(crate) fn level_filter(level: &str) -> log::LevelFilter {
    if std::env::var_os("RUST_LOG").is_some() {
        return log::max_level();
    }
    level
        .split(',')
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(log::LevelFilter::Info)
}
