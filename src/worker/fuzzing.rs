//! A harness for the frame-path fuzz target (`fuzz/fuzz_targets/frames.rs`,
//! built with the `fuzzing` feature): one real [`Session`] over a real
//! loopback socket, driven the way the worker's loop drives it (read with
//! a budget, hand messages to the built-in `echo` handler, carry out its
//! sends, flush, fail with the reader's close code), so that the fuzzer
//! exercises the daemon's own read and write path, not a copy of it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use super::session::{Flush, Read as SessionRead, Sent, Session, READ_BUDGET};
use super::stream::{Stream, Transport};
use super::upgrade::Upgrade;
use crate::handler::{Action, ConnId, ConnInfo, Echo};

/// One connection under test and the client's end of its socket.
pub struct Harness {
    session: Option<Session>,
    /// Kept open after a failure, as the worker lingers.
    lingering: Option<Stream>,
    client: TcpStream,
    handler: Echo,
    actions: Vec<Action>,
    output: Vec<u8>,
    failed_with: Option<u16>,
    max_send_buffer: usize,
}

impl Harness {
    /// A session with these limits whose first input is `leftover` (the
    /// bytes that followed the request head).
    pub fn new(
        max_message_size: usize,
        max_frame_size: usize,
        leftover: &[u8],
    ) -> io::Result<Harness> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, peer) = listener.accept()?;
        server.set_nonblocking(true)?;
        client.set_nonblocking(true)?;
        let stream = Stream::new(Transport::Plain(mio::net::TcpStream::from_std(server)));
        let up = Upgrade {
            info: info(peer),
            route: 0,
            leftover: leftover.to_vec(),
            max_message_size,
            counted: None,
            deflate: None,
            echo: false,
        };
        Ok(Harness {
            session: Some(Session::new(stream, up, max_frame_size, Instant::now())),
            lingering: None,
            client,
            handler: Echo,
            actions: Vec::new(),
            output: Vec::new(),
            failed_with: None,
            max_send_buffer: 16 << 20,
        })
    }

    /// The client sends `bytes`; the session handles what arrived. False
    /// once the connection is finished (closed, failed or dropped).
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut at = 0;
        while at < bytes.len() {
            match self.client.write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The socket is full: let the session take some first.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.step() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        self.step()
    }

    /// One readiness event, as `Worker::read_open`.
    fn step(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        session.stream_mut().arm(false);
        let mut budget = READ_BUDGET;
        let mut batch = Vec::new();
        loop {
            let read = session.read(
                &mut budget,
                Instant::now(),
                self.max_send_buffer,
                &mut batch,
            );
            for message in batch.drain(..) {
                session.dispatch(&mut self.handler, &mut self.actions, message);
                for action in self.actions.drain(..) {
                    if let Action::Send(m) = action {
                        if let Sent::Drop = session.send(m, self.max_send_buffer) {
                            self.session = None;
                            return false;
                        }
                    }
                }
            }
            match read {
                SessionRead::More => {}
                SessionRead::Stop { resume: true } => budget = READ_BUDGET,
                SessionRead::Stop { resume: false } => break,
                SessionRead::Closed => {
                    self.session = None;
                    self.collect();
                    return false;
                }
                SessionRead::Failed(e) => {
                    self.failed_with = Some(u16::from(e.close_code()));
                    if let Some(session) = self.session.take() {
                        self.lingering = Some(session.fail(e.close_code().into(), &e.to_string()));
                    }
                    self.collect();
                    return false;
                }
            }
        }
        let alive = !matches!(session.flush(), Flush::Broken);
        self.collect();
        alive
    }

    /// Reads what the server sent so far.
    fn collect(&mut self) {
        let mut buf = [0u8; 65536];
        loop {
            match self.client.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.output.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Everything the server sent, and the close code it failed the
    /// connection with, if it did.
    pub fn finish(mut self) -> (Vec<u8>, Option<u16>) {
        if let Some(session) = self.session.as_mut() {
            let _ = session.flush();
        }
        self.collect();
        (self.output, self.failed_with)
    }
}

fn info(peer: SocketAddr) -> ConnInfo {
    ConnInfo {
        id: ConnId(1),
        peer,
        path: "/echo".into(),
        query: String::new(),
        headers: Vec::new(),
        params: Vec::new(),
        route: "/echo".into(),
        subprotocol: None,
        value: Default::default(),
        compressed: false,
    }
}
