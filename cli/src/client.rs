//! `wssd client`: the command-line front end of [`wssd::client`].
//!
//! With `--send MSG` (repeatable) each message is sent and its reply printed
//! on its own line, then the connection is closed. Without `--send`, each
//! line of stdin is sent and every message received is printed, until stdin
//! ends or the server closes. Failures print one line on stderr and exit 1;
//! unusable arguments exit 2.
//!
//! `--count N` stops after N received messages and `--wait SECS` keeps
//! printing late messages until SECS pass without one. `--reconnect`
//! (stdin mode) reconnects with back-off when the connection is lost:
//! lines typed meanwhile wait in the stdin queue and are sent once it is
//! back; a line whose send broke is reported on stderr as lost, not sent
//! again. `-v` tells the connection, subprotocol and close code on
//! stderr, `-q` keeps stderr for failures only.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use wssd::client::reconnect::{Backoff, Event, KeepAlive, ReconnectOptions, ReconnectingClient};
use wssd::client::{Client, ClientConfig, ClientError, CloseCode, Message, Proxy};

/// Exit status of a failed connection or exchange.
const EXIT_FAILURE: i32 = 1;
/// Exit status of unusable arguments.
const EXIT_USAGE: i32 = 2;
/// How long the interactive loop waits for the server before looking at stdin again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Arguments of `wssd client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// ws:// or wss:// URL to connect to (user:pass@ becomes basic auth).
    pub url: String,

    /// Extra handshake header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,

    /// Connect through this HTTP CONNECT proxy.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,

    /// Basic-auth credentials for the proxy.
    #[arg(long, value_name = "USER:PASS", requires = "proxy")]
    pub proxy_auth: Option<String>,

    /// Timeout in seconds for connecting, each reply, and the close.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,

    /// Send messages longer than N bytes as several frames.
    #[arg(long, value_name = "N")]
    pub fragment_size: Option<usize>,

    /// PEM file with CA certificates to trust for wss://.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Do not verify the server's TLS certificate (testing only).
    #[arg(long)]
    pub insecure: bool,

    /// Send messages as binary instead of text.
    #[arg(long)]
    pub binary: bool,

    /// Do not offer permessage-deflate (offered by default, as browsers do).
    #[arg(long)]
    pub no_compression: bool,

    /// Subprotocol to offer (repeatable).
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,

    /// Message to send; its reply is printed (repeatable). Without it,
    /// stdin lines are sent.
    #[arg(long = "send", value_name = "MSG")]
    pub messages: Vec<String>,

    /// Stop after N messages have been received in all (with --send: send
    /// every message first, then wait for N replies).
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,

    /// After the expected replies, keep printing messages until SECS pass
    /// without one (late replies, server pushes).
    #[arg(long, value_name = "SECS")]
    pub wait: Option<f64>,

    /// Reconnect with back-off when the connection is lost (stdin mode).
    #[arg(long, conflicts_with = "messages")]
    pub reconnect: bool,

    /// With --reconnect: ping every SECS and reconnect if the pong is late.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 20.0,
        requires = "reconnect"
    )]
    pub ping_interval: f64,

    /// With --reconnect: how long a pong may take.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10.0,
        requires = "reconnect"
    )]
    pub pong_timeout: f64,

    /// With --reconnect: give up after N failed attempts in a row (default: never).
    #[arg(long, value_name = "N", requires = "reconnect")]
    pub max_attempts: Option<u32>,

    /// With --reconnect: longest delay between attempts.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30.0,
        requires = "reconnect"
    )]
    pub backoff_max: f64,

    /// More output on stderr: connection, subprotocol, close code and reason.
    #[arg(short = 'v', long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Only failures on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// How much `wssd client` says on stderr besides failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Quiet,
    Normal,
    Verbose,
}

impl ClientArgs {
    fn level(&self) -> Level {
        if self.quiet {
            Level::Quiet
        } else if self.verbose {
            Level::Verbose
        } else {
            Level::Normal
        }
    }

    /// Prints `message` on stderr if the output level is at least `at`.
    fn note(&self, at: Level, message: impl std::fmt::Display) {
        if self.level() >= at {
            eprintln!("wssd client: {message}");
        }
    }

    /// The --wait period, if any.
    fn wait_period(&self) -> Option<Duration> {
        self.wait.map(Duration::from_secs_f64)
    }
}

/// Runs `wssd client`; returns the process exit status.
pub fn run(args: ClientArgs) -> i32 {
    let (config, options) =
        match config_from(&args).and_then(|c| Ok((c, reconnect_options(&args)?))) {
            Ok(both) => both,
            Err(msg) => {
                eprintln!("wssd client: {msg}");
                return EXIT_USAGE;
            }
        };
    let result = if args.reconnect {
        ReconnectingClient::connect(&args.url, config.clone(), options).and_then(|mut client| {
            report_connected(&args, client.subprotocol());
            interactive(&mut client, &args, &config)
        })
    } else {
        Client::connect(&args.url, &config).and_then(|mut client| {
            report_connected(&args, client.subprotocol());
            let result = if args.messages.is_empty() {
                interactive(&mut client, &args, &config)
            } else {
                exchange(&mut client, &args)
            };
            report_close(&args, &client);
            result
        })
    };
    match result {
        Ok(()) => 0,
        Err(ClientError::InvalidUrl { url, reason }) => {
            eprintln!("wssd client: invalid URL {url:?}: {reason}");
            EXIT_USAGE
        }
        Err(err) => {
            eprintln!("wssd client: {err}");
            EXIT_FAILURE
        }
    }
}

/// Builds the [`ClientConfig`] from the arguments.
fn config_from(args: &ClientArgs) -> Result<ClientConfig, String> {
    if !args.timeout.is_finite() || args.timeout <= 0.0 {
        return Err(format!(
            "--timeout must be a positive number of seconds, not {}",
            args.timeout
        ));
    }
    let mut config = ClientConfig::default().with_timeout(Duration::from_secs_f64(args.timeout));
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .filter(|(name, _)| !name.trim().is_empty())
            .ok_or_else(|| format!("--header {header:?} must look like 'Name: value'"))?;
        config = config.with_header(name.trim(), value.trim());
    }
    if let Some(address) = &args.proxy {
        let credentials = match &args.proxy_auth {
            None => None,
            Some(auth) => {
                let (user, password) = auth
                    .split_once(':')
                    .ok_or("--proxy-auth must look like USER:PASS")?;
                Some((user.to_string(), password.to_string()))
            }
        };
        config.proxy = Some(Proxy {
            address: address.clone(),
            credentials,
        });
    }
    if args.fragment_size == Some(0) {
        return Err("--fragment-size must be at least 1".into());
    }
    config.fragment_size = args.fragment_size;
    config.compression = !args.no_compression;
    config.subprotocols = args.subprotocols.clone();
    config.tls.ca_file = args.ca_file.clone();
    config.tls.accept_invalid_certs = args.insecure;
    if let Some(wait) = args.wait {
        if !wait.is_finite() || wait < 0.0 {
            return Err(format!("--wait must be zero or more seconds, not {wait}"));
        }
    }
    Ok(config)
}

/// The reconnect settings from the arguments.
fn reconnect_options(args: &ClientArgs) -> Result<ReconnectOptions, String> {
    let secs = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!(
                "{name} must be a positive number of seconds, not {v}"
            ))
        }
    };
    Ok(ReconnectOptions {
        backoff: Backoff {
            max: secs("--backoff-max", args.backoff_max)?,
            max_attempts: args.max_attempts,
            ..Backoff::default()
        },
        keep_alive: Some(KeepAlive {
            interval: secs("--ping-interval", args.ping_interval)?,
            pong_timeout: secs("--pong-timeout", args.pong_timeout)?,
        }),
    })
}

/// Tells (on -v, or when subprotocols were offered) what was negotiated.
fn report_connected(args: &ClientArgs, subprotocol: Option<&str>) {
    args.note(Level::Verbose, format_args!("connected to {}", args.url));
    if !args.subprotocols.is_empty() {
        match subprotocol {
            Some(p) => args.note(Level::Normal, format_args!("subprotocol: {p}")),
            None => args.note(Level::Normal, "the server selected no subprotocol"),
        }
    }
}

/// Tells the close code and reason on -v.
fn report_close(args: &ClientArgs, client: &Client) {
    if let Some(code) = client.close_code() {
        match client.close_reason().filter(|r| !r.is_empty()) {
            Some(reason) => args.note(
                Level::Verbose,
                format_args!("closed: code {code} ({reason})"),
            ),
            None => args.note(Level::Verbose, format_args!("closed: code {code}")),
        }
    }
}

/// `--send` mode: send each message, print each reply (or, with
/// `--count`, send all and print the first N messages), then `--wait`, close.
fn exchange(client: &mut Client, args: &ClientArgs) -> Result<(), ClientError> {
    match args.count {
        None => {
            for text in &args.messages {
                let reply = client.send_receive(outgoing(text.as_bytes(), args.binary))?;
                print_message(&reply)?;
            }
        }
        Some(count) => {
            for text in &args.messages {
                client.send(outgoing(text.as_bytes(), args.binary))?;
            }
            for _ in 0..count {
                print_message(&client.receive()?)?;
            }
        }
    }
    if let Some(quiet) = args.wait_period().filter(|_| args.count.is_none()) {
        while let Some(message) = client.receive_timeout(quiet)? {
            print_message(&message)?;
        }
    }
    client.close(1000, "")
}

/// Closes cleanly and prints the messages that arrived before the close reply.
fn close_and_drain(client: &mut Client) -> Result<(), ClientError> {
    client.close(1000, "")?;
    while let Ok(message) = client.receive() {
        print_message(&message)?;
    }
    Ok(())
}

/// What the stdin loop gets from the connection in one poll.
enum Incoming {
    /// A message to print.
    Message(Message),
    /// Nothing within the poll interval (or a reconnection, reported).
    Nothing,
    /// The server closed normally: stop.
    Closed,
}

/// The stdin loop's view of a connection, plain or reconnecting, so that
/// one loop serves both.
trait Link {
    /// Sends one line; false if it was lost (reported) and not counted.
    fn send_line(&mut self, message: Message, args: &ClientArgs) -> Result<bool, ClientError>;
    /// Waits up to `wait` for what the server sends.
    fn poll(&mut self, wait: Duration, args: &ClientArgs) -> Result<Incoming, ClientError>;
    /// Closes cleanly and prints the messages that arrived before the close reply.
    fn finish(&mut self) -> Result<(), ClientError>;
}

impl Link for Client {
    fn send_line(&mut self, message: Message, _: &ClientArgs) -> Result<bool, ClientError> {
        self.send(message).map(|()| true)
    }

    fn poll(&mut self, wait: Duration, _: &ClientArgs) -> Result<Incoming, ClientError> {
        match self.receive_timeout(wait) {
            Ok(Some(message)) => Ok(Incoming::Message(message)),
            Ok(None) => Ok(Incoming::Nothing),
            Err(ClientError::Closed {
                code: CloseCode::NORMAL | CloseCode::AWAY | CloseCode::NO_STATUS,
                ..
            }) => Ok(Incoming::Closed),
            Err(err) => Err(err),
        }
    }

    fn finish(&mut self) -> Result<(), ClientError> {
        close_and_drain(self)
    }
}

impl Link for ReconnectingClient {
    fn send_line(&mut self, message: Message, args: &ClientArgs) -> Result<bool, ClientError> {
        // A clone shares the payload; kept to name a lost line.
        let line = message.clone();
        match self.send(message) {
            Ok(()) => Ok(true),
            Err(ClientError::SendLost { cause }) => {
                args.note(
                    Level::Quiet,
                    format_args!(
                        "line lost (not re-sent): {}: {cause}",
                        String::from_utf8_lossy(line.as_bytes())
                    ),
                );
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    fn poll(&mut self, wait: Duration, args: &ClientArgs) -> Result<Incoming, ClientError> {
        Ok(match self.next_event(wait)? {
            Some(Event::Message(message)) => Incoming::Message(message),
            Some(Event::Disconnected(why)) => {
                args.note(
                    Level::Normal,
                    format_args!("connection lost ({why}); reconnecting"),
                );
                Incoming::Nothing
            }
            Some(Event::Reconnected { attempts }) => {
                args.note(
                    Level::Normal,
                    format_args!("reconnected (after {attempts} attempts)"),
                );
                Incoming::Nothing
            }
            None => Incoming::Nothing,
        })
    }

    fn finish(&mut self) -> Result<(), ClientError> {
        self.close(1000, "")?;
        while let Some(message) = self.receive_pending() {
            print_message(&message)?;
        }
        Ok(())
    }
}

/// Interactive mode: stdin lines out, received messages in, until stdin
/// ends (then replies in flight are awaited within the timeout), `--count`
/// messages came, or the server closes. Over a reconnecting client, lost
/// connections are re-established with back-off; see the module
/// documentation for what happens to lines typed meanwhile.
fn interactive(
    link: &mut impl Link,
    args: &ClientArgs,
    config: &ClientConfig,
) -> Result<(), ClientError> {
    let lines = spawn_stdin_reader();
    let reply_wait = config.read_timeout.unwrap_or(Duration::from_secs(10));
    let (mut sent, mut received) = (0usize, 0usize);
    let mut stdin_done_at: Option<Instant> = None;
    loop {
        if args.count.is_some_and(|n| received >= n) {
            return link.finish();
        }
        if stdin_done_at.is_none() {
            loop {
                match lines.try_recv() {
                    Ok(line) => {
                        if link.send_line(outgoing(&line, args.binary), args)? {
                            sent += 1;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        stdin_done_at = Some(Instant::now());
                        break;
                    }
                }
            }
        }
        if let Some(done) = stdin_done_at {
            if finished(args, sent, received, done.elapsed(), reply_wait) {
                return link.finish();
            }
        }
        match link.poll(POLL_INTERVAL, args)? {
            Incoming::Message(message) => {
                print_message(&message)?;
                received += 1;
                if let Some(done) = &mut stdin_done_at {
                    *done = Instant::now();
                }
            }
            Incoming::Nothing => {}
            Incoming::Closed => return Ok(()),
        }
    }
}

/// Whether stdin mode is done, `quiet_for` after stdin ended or the last
/// message arrived: all replies came (and `--wait` passed quietly), or
/// the reply wait ran out. With `--count`, only the count ends it.
fn finished(
    args: &ClientArgs,
    sent: usize,
    received: usize,
    quiet_for: Duration,
    reply_wait: Duration,
) -> bool {
    if args.count.is_some() {
        return quiet_for >= reply_wait;
    }
    let wait = args.wait_period().unwrap_or(Duration::ZERO);
    (received >= sent && quiet_for >= wait) || quiet_for >= reply_wait.max(wait)
}

/// Reads stdin lines (without the line end) on a thread; the channel closes at EOF.
fn spawn_stdin_reader() -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.ends_with(b"\n") {
                        line.pop();
                        if line.ends_with(b"\r") {
                            line.pop();
                        }
                    }
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    receiver
}

/// The message to send for `payload`.
fn outgoing(payload: &[u8], binary: bool) -> Message {
    if binary {
        Message::binary(payload.to_vec())
    } else {
        Message::text(String::from_utf8_lossy(payload).into_owned())
    }
}

/// Prints a received message as one line (binary payloads are written raw).
fn print_message(message: &Message) -> Result<(), ClientError> {
    let mut out = io::stdout().lock();
    out.write_all(message.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(ClientError::Io)
}
