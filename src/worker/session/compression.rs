//! The worker's permessage-deflate state, shared by its connections: one
//! compressor for the connections whose server keeps no context, a pool
//! of inflaters for peers that keep none, and one output buffer for
//! compressed messages. A worker is one thread, so these are
//! thread-locals; no connection owns any of them between messages.

use std::cell::{Cell, RefCell};

use crate::deflate::{DeflateTuning, InflaterPool, SharedCompressor};

thread_local! {
    /// The worker's one compressor for every connection whose server
    /// keeps no context (created with the first compressed message; a
    /// worker runs one configuration generation).
    static SHARED: RefCell<Option<SharedCompressor>> = const { RefCell::new(None) };
    /// The worker's inflaters for messages from peers that keep no
    /// context: lent for one message, then reset and returned.
    static POOL: RefCell<InflaterPool> = RefCell::new(InflaterPool::default());
    /// The worker's output buffer for compressed messages: a send (or a
    /// broadcast) takes it, compresses into it, queues the frame from it
    /// and gives it back, so a send allocates nothing once it has grown
    /// to the messages' size, and no connection owns one (the stream
    /// copies only what the socket does not take at once).
    static DEFLATE_OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest compressed-output buffer the worker keeps between
/// messages; a larger one (a rare message of several MiB) is freed after
/// its send rather than held for the worker's life.
const KEEP_DEFLATE_OUT: usize = 1 << 20;

/// Takes the worker's compressed-output buffer (empty; an empty new one
/// if it is already taken). Give it back with [`give_back_deflate_out`].
pub(in crate::worker) fn take_deflate_out() -> Vec<u8> {
    let mut out = DEFLATE_OUT.take();
    out.clear();
    out
}

/// Returns a buffer from [`take_deflate_out`]: the worker keeps the
/// larger of it and the one it holds, up to [`KEEP_DEFLATE_OUT`].
pub(in crate::worker) fn give_back_deflate_out(out: Vec<u8>) {
    if out.capacity() > KEEP_DEFLATE_OUT {
        return;
    }
    let held = DEFLATE_OUT.take();
    DEFLATE_OUT.set(if held.capacity() >= out.capacity() {
        held
    } else {
        out
    });
}

/// Runs `f` with the worker's shared compressor (made with `deflate`'s
/// tuning on first use).
pub(in crate::worker) fn with_shared<R>(
    tuning: DeflateTuning,
    f: impl FnOnce(&mut SharedCompressor) -> R,
) -> R {
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        f(shared.get_or_insert_with(|| SharedCompressor::new(tuning)))
    })
}

/// Runs `f` with the worker's inflater pool.
pub(super) fn with_pool<R>(f: impl FnOnce(&mut InflaterPool) -> R) -> R {
    POOL.with(|pool| f(&mut pool.borrow_mut()))
}
