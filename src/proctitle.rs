//! Process titles as `ps` shows them, as nginx sets them:
//! `wssd: master process --config /etc/wssd/wssd.toml`,
//! `wssd: worker process 2 (generation 3)`, and `..., draining)` once a
//! worker drains.
//!
//! Linux shows a process's command line from the memory its `argv`
//! strings were in, followed by its environment strings (one contiguous
//! area, bounds in `/proc/self/stat`). A title longer than the original
//! command line has to overwrite the environment strings too, so
//! [`init`] first copies every environment string to the heap and points
//! `environ` at the copies (what glibc's `getenv`, Rust's `std::env` and
//! `exec` read), as nginx's `ngx_init_setproctitle` does. The process's
//! own environment therefore stays whole, and what it passes to a child
//! is complete; only `/proc/PID/environ`, which reads the original area,
//! no longer shows it. `prctl(PR_SET_MM_ARG_START)` would avoid the copy
//! but needs `CAP_SYS_RESOURCE`, which the systemd unit does not grant.
//!
//! [`init`] runs once in the master, after its arguments were captured
//! (Rust's `std::env::args` reads the same memory); forked workers
//! inherit the prepared area and only [`set`] their title.

use std::ffi::CString;
use std::sync::Mutex;

use nix::libc;

/// The writable title area: start address and length (0: no area).
static AREA: Mutex<(usize, usize)> = Mutex::new((0, 0));
/// The title set last, so that a suffix can be added to it.
static TITLE: Mutex<String> = Mutex::new(String::new());

/// Finds the argument and environment area, moves the environment out
/// of it, and keeps the area for [`set`]. Does nothing (titles stay the
/// command line) when `/proc/self/stat` cannot be read.
pub(crate) fn init() {
    let Some([arg_start, arg_end, env_start, env_end]) = area_bounds() else {
        return;
    };
    if arg_start == 0 || arg_end <= arg_start {
        return;
    }
    let end = if env_start == arg_end && env_end > env_start && move_environment(env_start, env_end)
    {
        env_end
    } else {
        arg_end
    };
    if let Ok(mut area) = AREA.lock() {
        *area = (arg_start, end - arg_start);
    }
}

/// Sets the title to `title`, cut to the area (the rest is zeroed).
pub(crate) fn set(title: &str) {
    if let Ok(mut t) = TITLE.lock() {
        title.clone_into(&mut t);
    }
    write(title);
    // The 15-byte name `top` and `ps -o comm` show.
    let short: String = title
        .trim_start_matches("wssd: ")
        .chars()
        .take(15)
        .collect();
    if let Ok(name) = CString::new(short) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// Adds `, draining` inside the closing parenthesis of the title set
/// last: `wssd: worker process 2 (generation 3, draining)`.
pub(crate) fn mark_draining() {
    let title = TITLE.lock().map(|t| t.clone()).unwrap_or_default();
    if title.is_empty() || title.contains("draining") {
        return;
    }
    let marked = match title.strip_suffix(')') {
        Some(base) => format!("{base}, draining)"),
        None => format!("{title} (draining)"),
    };
    set(&marked);
}

fn write(title: &str) {
    let Ok(area) = AREA.lock() else { return };
    let (start, len) = *area;
    if len < 2 {
        return;
    }
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 1);
    #[allow(unsafe_code)]
    // SAFETY: [start, start + len) is this process's argument area (and,
    // when included, its original environment strings, which nothing
    // refers to any more: `move_environment` repointed `environ`), as the
    // kernel reported it in /proc/self/stat; it is mapped, writable and
    // ours. Rust's `std::env::args` would read it, which is why the
    // master captures its arguments before calling `init`.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..n].copy_from_slice(&bytes[..n]);
        area[n..].fill(0);
    }
}

/// `arg_start arg_end env_start env_end`: fields 48 to 51 of
/// /proc/self/stat (Linux 3.5 and later).
fn area_bounds() -> Option<[usize; 4]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name in parentheses, from field 3 on.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    Some([get(48)?, get(49)?, get(50)?, get(51)?])
}

/// Points every `environ` entry that lies in [start, end) at a heap copy
/// (leaked: the environment lives as long as the process). Returns
/// whether the environment could be moved.
fn move_environment(start: usize, end: usize) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: `environ` is the NULL-terminated array of C strings glibc
    // keeps; the master is single-threaded here (nothing reads or
    // changes the environment concurrently). Each entry is replaced by a
    // pointer to a NUL-terminated copy that is never freed.
    unsafe {
        let mut entry = libc::environ;
        if entry.is_null() {
            return false;
        }
        while !(*entry).is_null() {
            let p = *entry as usize;
            if (start..end).contains(&p) {
                let copy = std::ffi::CStr::from_ptr(*entry).to_owned();
                *entry = copy.into_raw();
            }
            entry = entry.add(1);
        }
    }
    true
}
