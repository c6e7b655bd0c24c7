//! `wssd bench`: a load generator for WebSocket servers, in the spirit of
//! `redis-benchmark` (the `wssd-bench` package; the `wssd` binary of the
//! `wssd-cli` package runs it as its `bench` subcommand).
//!
//! Its own package, beside everything else benchmark-related: the peers
//! (`bench/peers/`), `make bench`'s scripts (`bench/scripts/`) and its tests
//! (`bench/tests/`); docs/bench.md and docs/benchmarks.md describe them.
//!
//! The modules, from the top down: each uses only modules below it, and
//! those after `cpu` use no other module of the crate.
//!
//! - `run`: one run: setup barrier, measurement window, memory and CPU
//!   samples, stop, summary;
//! - `report`: the summary, the human table, the JSON (`serde_json`) and
//!   the progress line;
//! - `worker`: one mio event loop per thread driving its connections;
//! - `plan`: the arguments checked and turned into the run plan;
//! - `error`: why a run could not be set up;
//! - `conn`: a connection's state, buffers and error categories;
//! - `cpu`: the server's CPU time over the window (schedstat);
//! - `args`: the command line (clap);
//! - `shared`: the state shared by the main thread and the workers;
//! - `frame`: the client-side WebSocket codec and opening handshake;
//! - `deflate`: permessage-deflate (offer, answer, compression; `flate2`);
//! - `stream`: plain TCP or TLS, the non-blocking TLS handshake;
//! - `payload`: checkable message payloads;
//! - `histogram`: the latency histogram (over `hdrhistogram`);
//! - `net`: sockets, source addresses, the open-file limit;
//! - `procmem`: the server's memory (RSS/PSS of a process tree);
//! - `target`: the `ws://` or `wss://` URL (parsed by `url`).

mod args;
mod conn;
mod cpu;
mod deflate;
mod error;
mod frame;
mod histogram;
mod net;
mod payload;
mod plan;
mod procmem;
mod report;
mod run;
mod shared;
mod stream;
mod target;
mod worker;

pub use args::{BenchArgs, Mode, PayloadKind};
pub use error::BenchError;
pub use run::run;
