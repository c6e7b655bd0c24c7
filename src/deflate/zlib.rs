//! C zlib (the system's, through `libz-sys`) as two small safe types, for
//! the deflate and inflate states a connection keeps between messages.
//!
//! Why C zlib there: its memory follows `memLevel` and the window bits
//! (a raw deflate state is about `2^(windowBits+2) + 2^(memLevel+9)`
//! bytes, an inflate state 7 KiB plus a `2^windowBits` window allocated
//! on first use), where zlib-rs's deflate state has a fixed 128 KiB hash
//! table and its inflate state a full 32 KiB window whatever the settings.
//! flate2's C backend does not expose `memLevel`, so the streams are
//! driven here directly.
//!
//! [`ZDeflate`] and [`ZInflate`] are thin: one `deflate`/`inflate` call
//! over caller's slices, reset, and `deflateEnd`/`inflateEnd` on drop. The
//! RFC 7692 contract (sync flush and tail, the size limit, text checks)
//! is in `codec`, shared with zlib-rs.
//!
//! The `z_stream` lives on the heap behind a raw pointer: zlib's internal
//! state points back to it (`deflateStateCheck` compares), so it must
//! never move, and Rust must not hold a unique reference to it while zlib
//! holds that pointer. zlib allocates through Rust's global allocator
//! ([`zalloc`]/[`zfree`]), so the unit tests' counting allocator sees its
//! memory and an allocation failure aborts as every Rust allocation does.

// This module is the FFI boundary to C zlib: every `unsafe` block below
// calls zlib or implements its allocator callbacks, with a `// SAFETY:`.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::ffi::{c_int, c_uint, c_void};
use std::fmt;
use std::ptr::{self, NonNull};

use libz_sys as z;

/// Why a zlib call failed: zlib's return code in words.
fn reason(code: c_int) -> &'static str {
    match code {
        z::Z_NEED_DICT => "the stream asks for a preset dictionary",
        z::Z_DATA_ERROR => "not a valid DEFLATE stream",
        z::Z_STREAM_ERROR => "inconsistent zlib stream state",
        z::Z_MEM_ERROR => "out of memory",
        z::Z_VERSION_ERROR => "the zlib library does not match its header",
        _ => "unexpected zlib return code",
    }
}

/// One owned `z_stream`, initialised by `init` and ended by `end` on drop.
struct Stream {
    strm: NonNull<z::z_stream>,
    end: unsafe extern "C" fn(z::z_streamp) -> c_int,
}

impl Stream {
    /// A stream initialised by `init` (`deflateInit2_` or
    /// `inflateInit2_` with the caller's parameters), or zlib's reason for
    /// refusing it.
    fn new(
        init: impl FnOnce(z::z_streamp) -> c_int,
        end: unsafe extern "C" fn(z::z_streamp) -> c_int,
    ) -> Result<Self, &'static str> {
        let strm = NonNull::from(Box::leak(Box::new(z::z_stream {
            next_in: ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: ptr::null_mut(),
            state: ptr::null_mut(),
            zalloc,
            zfree,
            opaque: ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        })));
        let code = init(strm.as_ptr());
        if code != z::Z_OK {
            // SAFETY: `strm` is the box leaked above; a failed init
            // leaves no state allocated (zlib frees what it took before
            // returning an error) and keeps no pointer to it.
            drop(unsafe { Box::from_raw(strm.as_ptr()) });
            return Err(reason(code));
        }
        Ok(Stream { strm, end })
    }

    /// Points the stream at `input` and `out` (at most 4 GiB of each,
    /// `c_uint`), runs `call`, and returns its code with the bytes read
    /// and written.
    fn run(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        call: impl FnOnce(z::z_streamp) -> c_int,
    ) -> (c_int, usize, usize) {
        let avail_in = c_uint::try_from(input.len()).unwrap_or(c_uint::MAX);
        let avail_out = c_uint::try_from(out.len()).unwrap_or(c_uint::MAX);
        let strm = self.strm.as_ptr();
        // SAFETY: `strm` is our initialised stream, not aliased (we hold
        // `&mut self`). zlib reads at most `avail_in` bytes from `next_in`
        // (never writes through it, despite the `*mut` type) and writes
        // at most `avail_out` bytes to `next_out`; both slices outlive the
        // call, and the pointers are cleared before returning so none
        // outlives the borrow.
        unsafe {
            (*strm).next_in = input.as_ptr().cast_mut();
            (*strm).avail_in = avail_in;
            (*strm).next_out = out.as_mut_ptr();
            (*strm).avail_out = avail_out;
            let code = call(strm);
            let used = (avail_in - (*strm).avail_in) as usize;
            let wrote = (avail_out - (*strm).avail_out) as usize;
            (*strm).next_in = ptr::null_mut();
            (*strm).avail_in = 0;
            (*strm).next_out = ptr::null_mut();
            (*strm).avail_out = 0;
            (code, used, wrote)
        }
    }

    fn as_ptr(&mut self) -> z::z_streamp {
        self.strm.as_ptr()
    }
}

// SAFETY: a `Stream` owns its `z_stream` and zlib's state exclusively
// (nothing else points into them), zlib keeps no thread-local or global
// mutable state for a stream, and every method that touches the stream
// takes `&mut self`; so it may move to another thread (a client moved
// into a thread), and a shared `&Stream` gives no access at all.
unsafe impl Send for Stream {}
// SAFETY: see `Send`: `&Stream` exposes nothing of the stream.
unsafe impl Sync for Stream {}

impl Drop for Stream {
    fn drop(&mut self) {
        let strm = self.strm.as_ptr();
        // SAFETY: `strm` was initialised by `Stream::new` and is ended
        // exactly once here: `deflateEnd`/`inflateEnd` free zlib's state
        // (through `zfree`); then nothing points to the `z_stream` any
        // more and the box made in `new` is freed.
        unsafe {
            (self.end)(strm);
            drop(Box::from_raw(strm));
        }
    }
}

/// A raw-deflate state of C zlib.
pub struct ZDeflate {
    stream: Stream,
}

impl fmt::Debug for ZDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZDeflate").finish_non_exhaustive()
    }
}

impl ZDeflate {
    /// `deflateInit2(level, Z_DEFLATED, -window_bits, mem_level,
    /// Z_DEFAULT_STRATEGY)`: raw deflate (no zlib header). zlib refuses
    /// window bits 8 for raw streams and anything outside 9..=15, level
    /// outside 0..=9 or memory level outside 1..=9 (`Err` with why).
    pub fn new(level: u8, window_bits: u8, mem_level: u8) -> Result<Self, &'static str> {
        let stream = Stream::new(
            |strm| {
                // SAFETY: `strm` is a fresh `z_stream` with our allocator
                // and null buffers, as `deflateInit2_` expects; the
                // version is the linked library's own (zlib checks its
                // major digit) and the size that of libz-sys's struct,
                // which zlib checks against its own.
                unsafe {
                    z::deflateInit2_(
                        strm,
                        c_int::from(level),
                        z::Z_DEFLATED,
                        -c_int::from(window_bits),
                        c_int::from(mem_level),
                        z::Z_DEFAULT_STRATEGY,
                        z::zlibVersion(),
                        struct_size(),
                    )
                }
            },
            z::deflateEnd,
        )?;
        Ok(ZDeflate { stream })
    }

    /// Compresses what it can of `input` into `out`, ending with a sync
    /// flush once all input is taken; returns `(read, written)`. Call
    /// again with the rest while `out` fills up. A call with nothing left
    /// to do is not an error (zlib's `Z_BUF_ERROR`): it reads and writes
    /// nothing.
    pub fn sync_flush(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, usize), &'static str> {
        let (code, used, wrote) = self.stream.run(input, out, |strm| {
            // SAFETY: `run` set up `strm`'s buffers from live slices.
            unsafe { z::deflate(strm, z::Z_SYNC_FLUSH) }
        });
        match code {
            z::Z_OK | z::Z_BUF_ERROR => Ok((used, wrote)),
            other => Err(reason(other)),
        }
    }

    /// Forgets the window and any pending output; keeps the allocation
    /// and the parameters.
    pub fn reset(&mut self) {
        // SAFETY: an initialised stream with no buffers attached.
        let code = unsafe { z::deflateReset(self.stream.as_ptr()) };
        debug_assert_eq!(code, z::Z_OK, "deflateReset");
    }
}

/// A raw-inflate state of C zlib.
pub struct ZInflate {
    stream: Stream,
}

impl fmt::Debug for ZInflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZInflate").finish_non_exhaustive()
    }
}

/// What one [`ZInflate::inflate`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Compressed bytes read.
    pub read: usize,
    /// Inflated bytes written.
    pub written: usize,
    /// The stream ended (a final block): what follows is not inflated.
    pub ended: bool,
}

impl ZInflate {
    /// `inflateInit2(-window_bits)`: raw inflate with a `2^window_bits`
    /// window (8..=15), allocated on the first output that needs it.
    pub fn new(window_bits: u8) -> Result<Self, &'static str> {
        let stream = Stream::new(
            |strm| {
                // SAFETY: as in `ZDeflate::new`, for `inflateInit2_`.
                unsafe {
                    z::inflateInit2_(
                        strm,
                        -c_int::from(window_bits),
                        z::zlibVersion(),
                        struct_size(),
                    )
                }
            },
            z::inflateEnd,
        )?;
        Ok(ZInflate { stream })
    }

    /// Inflates what it can of `input` into `out`. No progress (no input,
    /// or no room) is not an error.
    pub fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<Inflated, &'static str> {
        let (code, read, written) = self.stream.run(input, out, |strm| {
            // SAFETY: `run` set up `strm`'s buffers from live slices.
            unsafe { z::inflate(strm, z::Z_NO_FLUSH) }
        });
        match code {
            z::Z_OK | z::Z_BUF_ERROR | z::Z_STREAM_END => Ok(Inflated {
                read,
                written,
                ended: code == z::Z_STREAM_END,
            }),
            other => Err(reason(other)),
        }
    }

    /// Forgets the window contents and starts a new stream; keeps the
    /// window bits and the window's allocation.
    pub fn reset(&mut self) {
        // SAFETY: an initialised stream with no buffers attached.
        let code = unsafe { z::inflateReset(self.stream.as_ptr()) };
        debug_assert_eq!(code, z::Z_OK, "inflateReset");
    }
}

/// `sizeof(z_stream)`, which `*Init2_` checks against its own.
fn struct_size() -> c_int {
    c_int::try_from(std::mem::size_of::<z::z_stream>()).expect("z_stream is small")
}

/// Alignment of zlib's allocations (it stores pointers and `ush` arrays
/// in them, nothing wider than a pointer).
const ALIGN: usize = std::mem::align_of::<usize>();
/// Each allocation starts with its size, which `zfree` is not told.
const HEADER: usize = std::mem::size_of::<usize>();

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size, ALIGN).ok()
}

/// zlib's allocator: `items * size` bytes from Rust's global allocator,
/// with the total size stored in front. Out of memory aborts, as any Rust
/// allocation does; an impossible size returns null (zlib then reports
/// `Z_MEM_ERROR`).
extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    let Some(total) = (items as usize)
        .checked_mul(size as usize)
        .and_then(|n| n.checked_add(HEADER))
    else {
        return ptr::null_mut();
    };
    let Some(layout) = layout(total) else {
        return ptr::null_mut();
    };
    // SAFETY: `layout` has a non-zero size (at least the header). The
    // result is checked for null before the header is written into its
    // first `HEADER` bytes, which are aligned for `usize`.
    unsafe {
        let base = alloc::alloc(layout);
        if base.is_null() {
            alloc::handle_alloc_error(layout);
        }
        base.cast::<usize>().write(total);
        base.add(HEADER).cast()
    }
}

/// zlib's deallocator for what [`zalloc`] returned.
extern "C" fn zfree(_opaque: *mut c_void, address: *mut c_void) {
    if address.is_null() {
        return;
    }
    // SAFETY: `address` came from `zalloc` (zlib frees only what it
    // allocated through the stream's `zalloc`), so `HEADER` bytes before
    // it hold the allocation's total size, from which `zalloc`'s layout
    // is rebuilt exactly.
    unsafe {
        let base = address.cast::<u8>().sub(HEADER);
        let total = base.cast::<usize>().read();
        alloc::dealloc(base, Layout::from_size_align_unchecked(total, ALIGN));
    }
}
