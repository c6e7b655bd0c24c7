//! Autobahn|Testsuite echo client for `wssd::client`.
//!
//! Runs every case of a `wstest -m fuzzingserver` as an echo client, then
//! asks the server to write its reports:
//!
//! ```text
//! cargo run --release --example autobahn_client -- ws://127.0.0.1:9001 [AGENT]
//! ```
//!
//! `tests/autobahn/run.sh client` starts the fuzzing server, runs this and
//! judges the JSON reports; see `docs/conformance.md`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use wssd::client::{Client, ClientConfig, ClientError};

/// How long one case may take before the client gives up on it: wstest
/// sends the 1,000 compressed messages of a 12.*/13.* case slowly (one
/// took over 60 s on a loaded 2-CPU machine), and a case cut short is
/// judged on a truncated exchange.
const CASE_LIMIT: Duration = Duration::from_secs(300);

fn config() -> ClientConfig {
    let mut config = ClientConfig::default().with_timeout(CASE_LIMIT);
    // Case 9.1.6 / 9.2.6 send 16 MiB messages.
    config.max_message_size = Some(64 << 20);
    config
}

/// Reads the case count from `/getCaseCount`.
fn case_count(base: &str) -> Result<u32, String> {
    let url = format!("{base}/getCaseCount");
    let mut client = Client::connect(&url, &config()).map_err(|e| format!("{url}: {e}"))?;
    let message = client.receive().map_err(|e| format!("{url}: {e}"))?;
    let text = message.to_text_lossy();
    let _ = client.close(1000, "");
    text.trim()
        .parse()
        .map_err(|_| format!("{url}: not a case count: {text:?}"))
}

/// Echoes every data message back until the server closes or fails the
/// connection; returns how the case ended, for the log.
fn run_case(base: &str, case: u32, agent: &str) -> String {
    let url = format!("{base}/runCase?case={case}&agent={agent}");
    let mut client = match Client::connect(&url, &config()) {
        Ok(client) => client,
        Err(e) => return format!("connect failed: {e}"),
    };
    let start = Instant::now();
    let mut echoed = 0u64;
    loop {
        if start.elapsed() > CASE_LIMIT {
            return format!("gave up after {CASE_LIMIT:?} ({echoed} messages echoed)");
        }
        let message = match client.receive() {
            Ok(message) => message,
            Err(ClientError::Closed { code, .. }) => {
                return format!("closed by the server with {code} ({echoed} echoed)")
            }
            Err(e) => return format!("ended: {e} ({echoed} echoed)"),
        };
        match client.send(message) {
            Ok(()) => echoed += 1,
            Err(ClientError::Closed { code, .. }) => {
                return format!("closed by the server with {code} ({echoed} echoed)")
            }
            Err(e) => return format!("send failed: {e} ({echoed} echoed)"),
        }
    }
}

/// Tells the fuzzing server to write its reports for `agent`.
fn update_reports(base: &str, agent: &str) -> Result<(), String> {
    let url = format!("{base}/updateReports?agent={agent}");
    let mut client = Client::connect(&url, &config()).map_err(|e| format!("{url}: {e}"))?;
    // The server closes the connection once the reports are written.
    loop {
        match client.receive() {
            Ok(_) => {}
            Err(ClientError::Closed { .. }) => return Ok(()),
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(base) = args.first() else {
        eprintln!("usage: autobahn_client ws://HOST:PORT [AGENT]");
        return ExitCode::from(2);
    };
    let base = base.trim_end_matches('/');
    let agent = args.get(1).map_or("wssd", String::as_str);
    let count = match case_count(base) {
        Ok(count) => count,
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("autobahn_client: {count} cases");
    let started = Instant::now();
    for case in 1..=count {
        let case_start = Instant::now();
        let outcome = run_case(base, case, agent);
        eprintln!(
            "autobahn_client: case {case}/{count}: {outcome} [{:.2}s]",
            case_start.elapsed().as_secs_f64()
        );
    }
    if let Err(e) = update_reports(base, agent) {
        eprintln!("autobahn_client: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "autobahn_client: {count} cases run in {:.1}s; reports written",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
