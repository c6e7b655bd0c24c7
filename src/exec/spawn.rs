//! Starting a program: fork and exec through `std::process::Command`,
//! with three pipes made non-blocking on our side.
//!
//! Every descriptor the daemon opens is close-on-exec (std, mio and
//! signal-hook all open with `O_CLOEXEC`); descriptors the daemon itself
//! inherited without it (a shell's or a supervisor's) are marked
//! close-on-exec in the child with `close_range(2)`, so the program gets
//! exactly stdin, stdout and stderr. It runs as the worker's user (the worker
//! dropped its privileges before serving) with the worker's limits
//! (`RLIMIT_NOFILE` included), in a process group of its own so that
//! SIGTERM and SIGKILL reach a whole pipeline, and with
//! `PR_SET_PDEATHSIG` so that it dies with its worker.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::ExecConfig;

/// A started program and our ends of its pipes.
pub struct Spawned {
    /// Its pid, which is also its process group.
    pub pid: Pid,
    /// Its stdin, non-blocking.
    pub stdin: File,
    /// Its stdout, non-blocking.
    pub stdout: File,
    /// Its stderr, non-blocking.
    pub stderr: File,
}

/// Starts `cfg.command` with exactly `env` as its environment.
pub fn spawn(cfg: &ExecConfig, env: &[(String, String)]) -> io::Result<Spawned> {
    let (program, args) = cfg
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &cfg.working_dir {
        cmd.current_dir(dir);
    }
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (prctl, getppid, kill,
    // close_range); it allocates nothing and touches no lock.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The worker may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGKILL);
            }
            // Not closed: std reports a failed exec through a descriptor
            // of its own (close-on-exec already). Kernels before 5.11
            // lack the flag; the call then fails and changes nothing.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(io::Error::other("the child's pipes are missing"));
    };
    // `child` is dropped without waiting: the worker reaps by pid on
    // SIGCHLD.
    Ok(Spawned {
        pid,
        stdin: nonblocking(stdin.into())?,
        stdout: nonblocking(stdout.into())?,
        stderr: nonblocking(stderr.into())?,
    })
}

fn nonblocking(fd: OwnedFd) -> io::Result<File> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}
