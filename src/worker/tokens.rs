//! What each `mio` token of a worker stands for: the listening socket,
//! the signal pipes and the relay link have fixed tokens; every
//! connection slot owns a block of consecutive tokens after them (its
//! socket, then the pipes of its program on `exec` routes), so pipes need
//! no table of their own and a token leads straight to its slot.

use mio::Token;

use crate::exec::Pipe;

/// The shared listening socket.
pub(super) const LISTENER: Token = Token(0);
/// The worker's signal pipe (SIGTERM, SIGINT, SIGQUIT, SIGUSR1).
pub(super) const SIGNALS: Token = Token(1);
/// The relay link to the master.
pub(super) const RELAY: Token = Token(2);
/// The SIGCHLD pipe, which reaps `exec` programs.
pub(super) const CHILDREN: Token = Token(3);
/// The first connection token.
const FIRST_CONN: usize = 4;
/// Each connection slot owns this many consecutive tokens: its socket,
/// then the stdin, stdout and stderr pipes of its program (`exec` routes).
const TOKENS_PER_SLOT: usize = 4;

/// What a connection token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The connection's socket.
    Socket,
    /// A pipe of the connection's program.
    Pipe(Pipe),
}

/// The token of `part` of the connection in `slot`.
pub(super) fn token(slot: usize, part: Part) -> Token {
    let offset = match part {
        Part::Socket => 0,
        Part::Pipe(Pipe::Stdin) => 1,
        Part::Pipe(Pipe::Stdout) => 2,
        Part::Pipe(Pipe::Stderr) => 3,
    };
    Token(FIRST_CONN + slot * TOKENS_PER_SLOT + offset)
}

/// The slot and part a connection token (any token past the fixed ones)
/// stands for.
pub(super) fn slot_of(t: usize) -> (usize, Part) {
    let i = t - FIRST_CONN;
    let part = match i % TOKENS_PER_SLOT {
        0 => Part::Socket,
        1 => Part::Pipe(Pipe::Stdin),
        2 => Part::Pipe(Pipe::Stdout),
        _ => Part::Pipe(Pipe::Stderr),
    };
    (i / TOKENS_PER_SLOT, part)
}
