//! One connection's permessage-deflate state, for the worker and the
//! client: what was negotiated, and deflate/inflate state only while it
//! is needed.
//!
//! With no context kept in a direction (the default for the server's
//! side), nothing is held between messages: outgoing messages go through
//! the worker's [`SharedCompressor`], and the inflater of an incoming
//! message is dropped when the message ends. Only a peer that keeps its
//! context makes the connection keep an inflater (its window sized to
//! the negotiated `*_max_window_bits`), and only our own context
//! takeover makes it keep a compressor. Those kept states run on C zlib
//! ([`Backend::CZlib`]), whose memory the window bits and `memory_level`
//! bound; the worker's shared states run on zlib-rs.

use super::codec::{
    Backend, CompressError, Compressor, DeflateTuning, InflateError, Inflater, InflaterPool,
    SharedCompressor,
};
use super::negotiate::{Negotiated, Role};
use super::Settings;

/// The implementation of the states a connection keeps between messages:
/// C zlib, the one whose memory follows the negotiated window and
/// `memory_level` (at 9 bits and memory level 1 a compressor is about
/// 9 KiB, where zlib-rs's is 134 KiB; docs/compression.md).
const KEPT: Backend = Backend::CZlib;

/// A connection's compression state. Idle, with no context kept either
/// way, it is a few dozen bytes and owns no heap memory.
#[derive(Debug)]
pub struct ConnDeflate {
    params: Negotiated,
    role: Role,
    /// Messages shorter than this go out uncompressed.
    threshold: usize,
    tuning: DeflateTuning,
    /// Our compressor, only when we keep our context (created on first use).
    compressor: Option<Box<Compressor>>,
    /// The inflater of the message being received, or of every message
    /// when the peer keeps its context.
    inflater: Option<Box<Inflater>>,
}

impl ConnDeflate {
    /// The state for a connection that negotiated `params`, on our `role`
    /// side; `settings` gives the threshold, level and memory level.
    pub fn new(params: Negotiated, role: Role, settings: &Settings) -> Self {
        ConnDeflate {
            params,
            role,
            threshold: settings.threshold,
            tuning: settings.tuning(),
            compressor: None,
            inflater: None,
        }
    }

    /// The compressor's level and memory level.
    pub fn tuning(&self) -> DeflateTuning {
        self.tuning
    }

    /// What was negotiated.
    pub fn params(&self) -> &Negotiated {
        &self.params
    }

    /// `Some(window_bits)` when an outgoing message of `len` bytes would be
    /// compressed by the worker's [`SharedCompressor`] with that window:
    /// then one compressed copy serves every connection with the same key
    /// (a broadcast is compressed once). `None`: it goes out uncompressed
    /// or through this connection's own compressor.
    pub fn shared_key(&self, len: usize) -> Option<u8> {
        let out = self.params.outgoing(self.role);
        (out.can_compress() && len >= self.threshold && !out.context_takeover)
            .then_some(out.window_bits)
    }

    /// Compresses an outgoing message: `Ok(true)` when its RFC 7692
    /// payload was appended to `out` (send it with RSV1 set on the first
    /// frame), `Ok(false)` when it should be sent as it is (under the
    /// threshold, or a window zlib cannot deflate with).
    pub fn compress(
        &mut self,
        payload: &[u8],
        shared: &mut SharedCompressor,
        out: &mut Vec<u8>,
    ) -> Result<bool, CompressError> {
        let dir = self.params.outgoing(self.role);
        if !dir.can_compress() || payload.len() < self.threshold {
            return Ok(false);
        }
        if !dir.context_takeover {
            shared.compress(dir.window_bits, payload, out)?;
            return Ok(true);
        }
        let tuning = self.tuning;
        let compressor = self.compressor.get_or_insert_with(|| {
            Box::new(Compressor::with_backend(KEPT, tuning, dir.window_bits))
        });
        compressor.compress(payload, out)?;
        Ok(true)
    }

    /// Feeds the next compressed bytes of an incoming message (RSV1 was
    /// set on its first frame) and appends what they inflate to into
    /// `out`, returning how many bytes were appended (check new text at
    /// once for fail-fast UTF-8). `last`: these are the final bytes of the
    /// final frame. `limit`: `max_message_size`, applied to the inflated
    /// size. On an error the connection is to be failed with
    /// [`InflateError::close_code`]. Where the peer keeps no context the
    /// inflater comes from the worker's `pool` and goes back to it when
    /// the message ends.
    pub fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        limit: usize,
        pool: &mut InflaterPool,
        out: &mut Vec<u8>,
    ) -> Result<usize, InflateError> {
        self.inflate_checked(input, last, limit, pool, out, |_| true)
    }

    /// [`inflate`](Self::inflate) with `check` run on each piece of
    /// output as it is inflated (a text message's UTF-8 validator: false
    /// stops inflation with [`InflateError::InvalidText`], 1007).
    pub fn inflate_checked(
        &mut self,
        input: &[u8],
        last: bool,
        limit: usize,
        pool: &mut InflaterPool,
        out: &mut Vec<u8>,
        check: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, InflateError> {
        let dir = self.params.incoming(self.role);
        let bits = dir.inflate_window_bits();
        let inflater = self.inflater.get_or_insert_with(|| {
            if dir.context_takeover {
                Box::new(Inflater::with_backend(KEPT, bits))
            } else {
                pool.take(bits)
            }
        });
        let result = inflater.feed_checked(input, last, limit, out, check);
        if result.is_err() || (last && !dir.context_takeover) {
            if let Some(inflater) = self.inflater.take() {
                if !dir.context_takeover {
                    pool.give(inflater);
                }
            }
        }
        result
    }

    /// Whether the connection holds any deflate or inflate state now (an
    /// idle connection without context takeover must not).
    pub fn holds_state(&self) -> bool {
        self.compressor.is_some() || self.inflater.is_some()
    }
}
