//! Per-worker spare byte buffers: a connection borrows one for a loop
//! turn and hands it back once its bytes are sent, so the common case
//! allocates nothing and an idle connection holds no buffer. One
//! thread-local cell per use (the loop is single-threaded).

use std::cell::Cell;
use std::thread::LocalKey;

/// A worker's spare buffer of one kind.
pub(super) type Spare = LocalKey<Cell<Vec<u8>>>;

/// The spare buffer, or a new empty one. (`try_with`: a buffer needed
/// while the thread's locals are torn down simply does without.)
pub(super) fn take(spare: &'static Spare) -> Vec<u8> {
    spare.try_with(Cell::take).unwrap_or_default()
}

/// Returns `buf`, emptied, as the spare if it is larger than the one
/// held and at most `keep` bytes (a larger one is freed).
pub(super) fn give(spare: &'static Spare, mut buf: Vec<u8>, keep: usize) {
    if buf.capacity() == 0 || buf.capacity() > keep {
        return;
    }
    buf.clear();
    let _ = spare.try_with(|cell| {
        let held = cell.take();
        cell.set(if held.capacity() >= buf.capacity() {
            held
        } else {
            buf
        });
    });
}
