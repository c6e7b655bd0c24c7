//! CPU time of the servers under test over the measurement window, so that
//! "messages per server CPU-second" divides the window's messages by the
//! window's CPU time, without the connection setup and teardown around it
//! (10,000 handshakes before a broadcast run would otherwise count against
//! its deliveries).
//!
//! The time is the kernel's on-CPU time in nanoseconds of every thread of
//! a process and of its descendants (`/proc/PID/task/TID/schedstat`, field
//! 1: user and system time alike); `/proc/PID/stat` would give 10 ms
//! ticks, too coarse for windows of a few seconds.

use std::fs;

/// On-CPU time of each root process's tree at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// `(root pid, nanoseconds of it and its descendants)`, in the order
    /// the roots were given; a root that has gone is left out.
    pub trees: Vec<(i32, u64)>,
}

/// Samples the trees of `roots` (empty when `roots` is).
pub fn sample(roots: &[i32]) -> CpuSample {
    let trees = roots
        .iter()
        .filter_map(|&root| Some((root, tree_ns(root)?)))
        .collect();
    CpuSample { trees }
}

/// Per root, the seconds between `before` and `after`; roots missing from
/// either are left out.
pub fn window(before: &CpuSample, after: &CpuSample) -> Vec<(i32, f64)> {
    after
        .trees
        .iter()
        .filter_map(|&(pid, end)| {
            let (_, start) = before.trees.iter().find(|(p, _)| *p == pid)?;
            Some((pid, end.saturating_sub(*start) as f64 / 1e9))
        })
        .collect()
}

/// Nanoseconds on CPU of `root` and its descendants; `None` if `root`'s
/// own threads cannot be read (gone, or a kernel without schedstat).
fn tree_ns(root: i32) -> Option<u64> {
    let own = process_ns(root)?;
    // A descendant may exit between listing and reading: it counts 0.
    let others: u64 = crate::procmem::descendants(root)
        .into_iter()
        .filter_map(process_ns)
        .sum();
    Some(own + others)
}

/// Nanoseconds on CPU of every thread of `pid`.
fn process_ns(pid: i32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = None;
    for task in tasks.flatten() {
        if let Some(ns) = fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            *total.get_or_insert(0) += ns;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_time_grows_while_it_works() {
        let pid = std::process::id() as i32;
        let before = sample(&[pid]);
        assert_eq!(before.trees.len(), 1, "schedstat readable for ourselves");
        // Work until the kernel has accounted some time (bounded).
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
            if i % 1_000_000 == 0 && window(&before, &sample(&[pid]))[0].1 > 0.0 {
                break;
            }
        }
        std::hint::black_box(x);
        let secs = window(&before, &sample(&[pid]));
        assert_eq!(secs.len(), 1);
        assert!(secs[0].1 > 0.0, "{secs:?}");
    }

    #[test]
    fn a_root_that_does_not_exist_is_left_out() {
        // Pids are below 2^22 on Linux.
        let gone = sample(&[i32::MAX]);
        assert!(gone.trees.is_empty());
        assert!(window(&gone, &gone).is_empty());
    }
}
