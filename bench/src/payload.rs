//! Message payloads: every message is distinct and checkable byte for byte.
//!
//! An echo payload starts with the message sequence number (16 hex digits,
//! least significant first) and the connection id (8 hex digits), then a
//! rotated `a..z` filler whose rotation depends on both. A stale, swapped
//! or corrupted echo therefore never matches. A broadcast payload carries
//! the sequence number and the send timestamp instead of the connection.
//! Everything is ASCII, so the same payloads serve text and binary modes.

/// The filler alphabet.
const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
/// Filler bytes copied per chunk: a multiple of 26 so every chunk starts at
/// the same rotation.
const CHUNK: usize = 26 * 158;
/// The alphabet repeated, long enough for any rotation plus one chunk.
static PATTERN: [u8; CHUNK + 26] = build_pattern();
/// Hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Length of a broadcast header: sequence number and timestamp.
pub const STAMP_LEN: usize = 32;

const fn build_pattern() -> [u8; CHUNK + 26] {
    let mut out = [0u8; CHUNK + 26];
    let mut i = 0;
    while i < out.len() {
        out[i] = ALPHABET[i % 26];
        i += 1;
    }
    out
}

/// The filler rotation of a message.
fn rotation(conn: u32, seq: u64) -> usize {
    let mixed = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(conn).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    // `% 26` keeps the value tiny, so the cast is lossless.
    ((mixed >> 32) % 26) as usize
}

/// Writes `value` as `digits` hex digits, least significant first, into
/// as much of `out` as fits; returns how many bytes were written.
fn put_hex(out: &mut [u8], value: u64, digits: usize) -> usize {
    let n = digits.min(out.len());
    for (i, byte) in out[..n].iter_mut().enumerate() {
        *byte = HEX[((value >> (4 * i)) & 0xF) as usize];
    }
    n
}

/// Reads `digits` hex digits written by `put_hex`.
fn get_hex(input: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &c) in input.iter().enumerate() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        value |= u64::from(digit) << (4 * i);
    }
    Some(value)
}

/// Fills `out` with the filler at rotation `rot`.
fn put_filler(out: &mut [u8], rot: usize) {
    for chunk in out.chunks_mut(CHUNK) {
        chunk.copy_from_slice(&PATTERN[rot..rot + chunk.len()]);
    }
}

/// Whether `input` is the filler at rotation `rot`.
fn is_filler(input: &[u8], rot: usize) -> bool {
    input
        .chunks(CHUNK)
        .all(|chunk| chunk == &PATTERN[rot..rot + chunk.len()])
}

/// Fills `out` with the echo payload of message `seq` of connection `conn`.
pub fn fill_echo(out: &mut [u8], conn: u32, seq: u64) {
    let n = put_hex(out, seq, 16);
    let m = put_hex(&mut out[n..], u64::from(conn), 8);
    put_filler(&mut out[n + m..], rotation(conn, seq));
}

/// Returns the index of the first byte where `input` differs from the echo
/// payload of message `seq` of connection `conn` of `len` bytes, or `None`
/// when it matches exactly.
pub fn check_echo(input: &[u8], len: usize, conn: u32, seq: u64) -> Option<usize> {
    if input.len() != len {
        return Some(input.len().min(len));
    }
    let mut head = [0u8; 24];
    let n = put_hex(&mut head, seq, 16);
    let m = put_hex(&mut head[n..], u64::from(conn), 8);
    let split = (n + m).min(len);
    if let Some(i) = first_difference(&input[..split], &head[..split]) {
        return Some(i);
    }
    let rest = &input[split..];
    let rot = rotation(conn, seq);
    if is_filler(rest, rot) {
        return None;
    }
    let mut expected = vec![0u8; rest.len()];
    put_filler(&mut expected, rot);
    first_difference(rest, &expected).map(|i| i + split)
}

/// The first index where `a` and `b` differ.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Fills `out` (at least [`STAMP_LEN`] bytes) with broadcast message `seq`
/// sent at `sent_ns` nanoseconds after the run's epoch.
pub fn fill_stamp(out: &mut [u8], seq: u64, sent_ns: u64) {
    let n = put_hex(out, seq, 16);
    let m = put_hex(&mut out[n..], sent_ns, 16);
    put_filler(&mut out[n + m..], rotation(u32::MAX, seq));
}

/// Parses and checks a broadcast payload of `len` bytes; returns its
/// sequence number and send timestamp, or `None` if it is malformed.
pub fn check_stamp(input: &[u8], len: usize) -> Option<(u64, u64)> {
    if input.len() != len || len < STAMP_LEN {
        return None;
    }
    let seq = get_hex(&input[..16])?;
    let sent_ns = get_hex(&input[16..STAMP_LEN])?;
    is_filler(&input[STAMP_LEN..], rotation(u32::MAX, seq)).then_some((seq, sent_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_payload_roundtrip_and_corruption() {
        for len in [0usize, 1, 5, 24, 64, 5000, 70_000] {
            let mut buf = vec![0u8; len];
            fill_echo(&mut buf, 7, 42);
            assert_eq!(check_echo(&buf, len, 7, 42), None, "len {len}");
            if len > 0 {
                assert!(check_echo(&buf, len, 7, 43).is_some() || len < 1);
                let last = len - 1;
                buf[last] ^= 1;
                assert_eq!(check_echo(&buf, len, 7, 42), Some(last));
            }
        }
    }

    #[test]
    fn other_connection_does_not_match() {
        let mut buf = vec![0u8; 64];
        fill_echo(&mut buf, 1, 5);
        assert!(check_echo(&buf, 64, 2, 5).is_some());
        assert_eq!(check_echo(&buf[..63], 64, 1, 5), Some(63));
    }

    #[test]
    fn stamp_roundtrip() {
        let mut buf = vec![0u8; 100];
        fill_stamp(&mut buf, 99, 123_456_789);
        assert_eq!(check_stamp(&buf, 100), Some((99, 123_456_789)));
        buf[50] = b'!';
        assert_eq!(check_stamp(&buf, 100), None);
    }
}
