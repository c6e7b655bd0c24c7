//! `wssd client`: the command-line front end of [`crate::client`].
//!
//! With `--send MSG` (repeatable) each message is sent and its reply printed
//! on its own line, then the connection is closed. Without `--send`, each
//! line of stdin is sent and every message received is printed, until stdin
//! ends or the server closes. Failures print one line on stderr and exit 1;
//! unusable arguments exit 2.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use super::{Client, ClientConfig, ClientError, CloseCode, Message, Proxy};

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
}

/// Runs `wssd client`; returns the process exit status.
pub fn run(args: ClientArgs) -> i32 {
    let config = match config_from(&args) {
        Ok(config) => config,
        Err(msg) => {
            eprintln!("wssd client: {msg}");
            return EXIT_USAGE;
        }
    };
    let result = Client::connect(&args.url, &config).and_then(|mut client| {
        if args.messages.is_empty() {
            interactive(&mut client, &args, &config)
        } else {
            exchange(&mut client, &args)
        }
    });
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
    Ok(config)
}

/// `--send` mode: send each message, print each reply, close.
fn exchange(client: &mut Client, args: &ClientArgs) -> Result<(), ClientError> {
    for text in &args.messages {
        let reply = client.send_receive(outgoing(text.as_bytes(), args.binary))?;
        print_message(&reply)?;
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

/// Interactive mode: stdin lines out, received messages in, until stdin ends
/// (then replies in flight are awaited within the timeout) or the server closes.
fn interactive(
    client: &mut Client,
    args: &ClientArgs,
    config: &ClientConfig,
) -> Result<(), ClientError> {
    let lines = spawn_stdin_reader();
    let reply_wait = config.read_timeout.unwrap_or(Duration::from_secs(10));
    let (mut sent, mut received) = (0usize, 0usize);
    let mut stdin_done_at: Option<Instant> = None;
    loop {
        if stdin_done_at.is_none() {
            loop {
                match lines.try_recv() {
                    Ok(line) => {
                        client.send(outgoing(&line, args.binary))?;
                        sent += 1;
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
            if received >= sent || done.elapsed() >= reply_wait {
                return close_and_drain(client);
            }
        }
        match client.receive_timeout(POLL_INTERVAL) {
            Ok(Some(message)) => {
                print_message(&message)?;
                received += 1;
                if let Some(done) = &mut stdin_done_at {
                    *done = Instant::now();
                }
            }
            Ok(None) => {}
            Err(ClientError::Closed {
                code: CloseCode::NORMAL | CloseCode::AWAY | CloseCode::NO_STATUS,
                ..
            }) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
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
