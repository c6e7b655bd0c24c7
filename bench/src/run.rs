//! One run of `wssd bench`: set up the plan and the worker threads, wait
//! for the connections (the setup barrier), open and close the
//! measurement window (progress, memory and CPU samples), stop the
//! workers and summarise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::args::{BenchArgs, Mode};
use crate::cpu;
use crate::error::BenchError;
use crate::plan::{check_fd_limit, make_plan, Plan};
use crate::procmem::{self, MemError, MemSample};
use crate::report::{Progress, Summary};
use crate::shared::Shared;
use crate::worker::{Worker, WorkerResult, WAKE};

/// Runs `wssd bench`; returns the process exit status.
pub fn run(args: BenchArgs) -> i32 {
    match execute(&args) {
        Ok(summary) => {
            summary.print(args.json);
            if summary.error_total() > 0 {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("wssd bench: {e}");
            2
        }
    }
}

/// Checks that every server accepts TCP connections at all.
fn probe(plan: &Plan) -> Result<(), BenchError> {
    for e in &plan.endpoints {
        std::net::TcpStream::connect_timeout(&e.target.addr, plan.connect_timeout)
            .map(drop)
            .map_err(|err| BenchError::Unreachable(e.target.addr.to_string(), err))?;
    }
    Ok(())
}

/// Sets up, runs and summarises one benchmark.
fn execute(args: &BenchArgs) -> Result<Summary, BenchError> {
    let plan = Arc::new(make_plan(args)?);
    check_fd_limit(&plan)?;
    probe(&plan)?;
    let baseline = args.pid.map(procmem::sample).transpose()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_sigint(&interrupted);
    let (shared, handles) = spawn(&plan)?;
    let outcome = orchestrate(&plan, &shared, &handles, args, &interrupted);
    shared.stop.store(true, Ordering::Release);
    shared.wake_all();
    let results: Vec<WorkerResult> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    let timing = outcome?;
    let handshakes: u64 = results.iter().map(|r| r.handshakes).sum();
    if plan.mode == Mode::Handshake && handshakes == 0 && shared.errors.load(Ordering::Relaxed) > 0
    {
        return Err(BenchError::NoConnection(first_error(&shared)));
    }
    let samples = shared.samples();
    let mut summary = Summary::new(&plan, &results, timing.start, timing.stopped);
    summary.samples = samples;
    summary.connected = timing.connected;
    summary.server_cpu = timing.server_cpu;
    match timing.holding {
        Some(Ok(sample)) => summary.set_memory(args.pid, baseline, Some(sample)),
        Some(Err(e)) => summary.add_note(format!("server memory not measured: {e}")),
        None => {}
    }
    summary.finish_broadcast(&plan, &results, plan.receivers(timing.connected));
    if interrupted.load(Ordering::Relaxed) {
        summary.add_note("interrupted (SIGINT) before the requested duration".into());
    }
    Ok(summary)
}

/// Makes a first SIGINT end the measurement early (the report is still
/// printed) and a second one exit at once with status 130.
fn watch_sigint(flag: &Arc<AtomicBool>) {
    use signal_hook::consts::SIGINT;
    // Without the handlers Ctrl-C just kills the run, as before.
    let _ = signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(flag));
    let _ = signal_hook::flag::register(SIGINT, Arc::clone(flag));
}

/// Creates the event loops and starts one worker thread per loop.
fn spawn(plan: &Arc<Plan>) -> Result<(Arc<Shared>, Vec<JoinHandle<WorkerResult>>), BenchError> {
    let mut polls = Vec::new();
    let mut wakers = Vec::new();
    for _ in 0..plan.threads {
        let poll = Poll::new().map_err(BenchError::Setup)?;
        wakers.push(Waker::new(poll.registry(), WAKE).map_err(BenchError::Setup)?);
        polls.push(poll);
    }
    let shared = Arc::new(Shared::new(wakers));
    let mut handles = Vec::new();
    for (index, poll) in polls.into_iter().enumerate() {
        let ids: Vec<u32> = (0..plan.connections)
            .filter(|i| *i as usize % plan.threads as usize == index)
            .collect();
        let worker = Worker::new(Arc::clone(plan), Arc::clone(&shared), poll, index, ids);
        let handle = thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || worker.run())
            .map_err(BenchError::Setup)?;
        handles.push(handle);
    }
    Ok((shared, handles))
}

/// Timestamps and samples taken by the main thread.
struct Timing {
    start: Instant,
    stopped: Instant,
    connected: u64,
    /// The memory sample taken while the connections were held.
    holding: Option<Result<MemSample, MemError>>,
    /// Per `--cpu-pid`, its tree's CPU seconds over the window.
    server_cpu: Vec<(i32, f64)>,
}

/// Waits for the setup barrier, runs the measurement window, samples memory.
fn orchestrate(
    plan: &Plan,
    shared: &Shared,
    handles: &[JoinHandle<WorkerResult>],
    args: &BenchArgs,
    interrupted: &AtomicBool,
) -> Result<Timing, BenchError> {
    let pid = args.pid;
    let mut progress = Progress::new(plan);
    let connected = if plan.mode == Mode::Handshake {
        u64::from(plan.connections)
    } else {
        wait_for_setup(plan, shared, handles, &mut progress, interrupted)?
    };
    shared
        .receivers
        .store(plan.receivers(connected), Ordering::Release);
    let cpu_before = cpu::sample(&args.cpu_pids);
    let start = Instant::now();
    shared.start.store(true, Ordering::Release);
    shared.wake_all();
    let end = start + plan.duration;
    let middle = start + plan.duration / 2;
    let mut holding: Option<Result<MemSample, MemError>> = None;
    loop {
        let now = Instant::now();
        if now >= end || handles.iter().all(JoinHandle::is_finished) {
            break;
        }
        if interrupted.load(Ordering::Relaxed) {
            progress.interrupted(now.duration_since(start));
            break;
        }
        if let (Some(pid), None, true) = (pid, &holding, now >= middle) {
            holding = Some(procmem::sample(pid));
        }
        progress.tick(shared, now.duration_since(start));
        let wake = if holding.is_none() && pid.is_some() {
            end.min(middle)
        } else {
            end
        };
        thread::sleep(
            wake.saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        );
    }
    let stopped = Instant::now();
    let server_cpu = cpu::window(&cpu_before, &cpu::sample(&args.cpu_pids));
    if let (Some(pid), None) = (pid, &holding) {
        holding = Some(procmem::sample(pid));
    }
    progress.done();
    Ok(Timing {
        start,
        stopped,
        connected,
        holding,
        server_cpu,
    })
}

/// The first error message kept, for a one-line setup failure.
fn first_error(shared: &Shared) -> String {
    shared
        .samples()
        .into_iter()
        .next()
        .unwrap_or_else(|| "unknown error".into())
}

/// Waits until every connection is ready or failed; returns how many are
/// ready.
fn wait_for_setup(
    plan: &Plan,
    shared: &Shared,
    handles: &[JoinHandle<WorkerResult>],
    progress: &mut Progress,
    interrupted: &AtomicBool,
) -> Result<u64, BenchError> {
    let total = u64::from(plan.connections);
    let setup_start = Instant::now();
    loop {
        let ready = shared.ready.load(Ordering::Acquire);
        let failed = shared.failed.load(Ordering::Acquire);
        if ready + failed >= total || handles.iter().all(JoinHandle::is_finished) {
            if ready == 0 {
                let first = first_error(shared);
                return Err(BenchError::NoConnection(first));
            }
            return Ok(ready);
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(BenchError::Interrupted);
        }
        progress.setup(ready, failed, total, setup_start.elapsed());
        thread::sleep(Duration::from_millis(5));
    }
}
