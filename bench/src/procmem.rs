//! Memory of the server under test: RSS and PSS summed over a process and
//! all its descendants, from `/proc`.

use std::fmt;
use std::fs;

/// A memory sample of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemSample {
    /// Processes in the tree (the root included).
    pub processes: usize,
    /// Sum of resident set sizes, KiB.
    pub rss_kib: u64,
    /// Sum of proportional set sizes, KiB.
    pub pss_kib: u64,
}

/// Why a sample could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemError {
    /// `/proc/PID/smaps_rollup` of the root is unreadable.
    Unreadable(i32, String),
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::Unreadable(pid, e) => {
                write!(f, "cannot read /proc/{pid}/smaps_rollup: {e}")
            }
        }
    }
}

/// Samples the memory of `pid` and all its descendants.
pub fn sample(pid: i32) -> Result<MemSample, MemError> {
    let (rss, pss) = rollup(pid).map_err(|e| MemError::Unreadable(pid, e.to_string()))?;
    let mut total = MemSample {
        processes: 1,
        rss_kib: rss,
        pss_kib: pss,
    };
    for child in descendants(pid) {
        // A child may exit between listing and reading: skip it.
        if let Ok((rss, pss)) = rollup(child) {
            total.processes += 1;
            total.rss_kib += rss;
            total.pss_kib += pss;
        }
    }
    Ok(total)
}

/// RSS and PSS of one process, KiB.
fn rollup(pid: i32) -> std::io::Result<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("Rss:"), field("Pss:")))
}

/// All descendants of `pid` (children, grandchildren, ...).
pub fn descendants(pid: i32) -> Vec<i32> {
    let parents = parent_table();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        let children: Vec<i32> = match &parents {
            Some(table) => table
                .iter()
                .filter(|(_, pp)| *pp == p)
                .map(|(c, _)| *c)
                .collect(),
            None => children_of(p),
        };
        for c in children {
            if c != pid && !found.contains(&c) {
                found.push(c);
                frontier.push(c);
            }
        }
    }
    found
}

/// Children of `pid` from `/proc/PID/task/*/children`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// `(pid, ppid)` of every process from `/proc/*/stat`, or `None` when the
/// `children` files exist (they are cheaper to read).
fn parent_table() -> Option<Vec<(i32, i32)>> {
    if fs::metadata("/proc/self/task").is_ok()
        && fs::read_dir("/proc/self/task")
            .ok()?
            .flatten()
            .any(|t| t.path().join("children").exists())
    {
        return None;
    }
    let entries = fs::read_dir("/proc").ok()?;
    let table = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| Some((p, ppid_of(p)?)))
        .collect();
    Some(table)
}

/// The parent of `pid` from `/proc/PID/stat`.
fn ppid_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_own_process() {
        let s = sample(std::process::id() as i32).unwrap();
        assert!(s.processes >= 1);
        assert!(s.rss_kib > 0);
    }
}
