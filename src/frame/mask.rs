//! Masking (RFC 6455 §5.3): every payload byte XOR one byte of a 4-byte
//! key, done in place, several words at a time.

/// XORs `buf` in place with `key`, as bytes `offset..offset + buf.len()`
/// of a frame's payload (the key position continues across reads).
///
/// The work is done 16 bytes at a time as `u128` XORs, which the compiler
/// turns into one vector load, XOR and store each; the last < 16 bytes go
/// 4 at a time, and only the last < 4 byte by byte (a short message is
/// mostly tail). Masking and unmasking are the same operation.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let (key, wide) = key_at(key, offset);
    let word = u32::from_ne_bytes(key);
    let mut blocks = buf.chunks_exact_mut(16);
    for block in &mut blocks {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(block);
        block.copy_from_slice(&(u128::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    // 16 and 4 are multiples of 4: each remainder starts at key position 0.
    let mut words = blocks.into_remainder().chunks_exact_mut(4);
    for chunk in &mut words {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u32::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// [`apply_mask`] for a text payload, telling also whether the unmasked
/// bytes are all ASCII (`false` leaves the full UTF-8 check to the
/// caller).
///
/// One pass: each unmasked block is checked in the register the XOR
/// left it in. Checking afterwards (`is_ascii`) reads back, 16 bytes at a
/// time, bytes just stored 8 at a time, which the CPU cannot forward from
/// its store buffer: a stall per block, and the largest share of the
/// unmasking time in a profile of a pipelined 64 B echo (half of it gone
/// with this).
pub fn apply_mask_ascii(buf: &mut [u8], key: [u8; 4], offset: u64) -> bool {
    let (key, wide) = key_at(key, offset);
    let mut high = 0u128;
    let mut blocks = buf.chunks_exact_mut(16);
    for block in &mut blocks {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(block);
        let plain = u128::from_ne_bytes(bytes) ^ wide;
        high |= plain;
        block.copy_from_slice(&plain.to_ne_bytes());
    }
    // 16 is a multiple of 4: the remainder starts at key position 0.
    let mut tail = 0u8;
    for (i, b) in blocks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
        tail |= *b;
    }
    high & 0x8080_8080_8080_8080_8080_8080_8080_8080 == 0 && tail & 0x80 == 0
}

/// The key as seen from payload position `offset`, in memory order, and
/// the same key in each of the four 32-bit lanes of a `u128` (no lane
/// carries into the next), for XORing 16 bytes at a time.
fn key_at(key: [u8; 4], offset: u64) -> ([u8; 4], u128) {
    let shift = 8 * (offset & 3) as u32;
    let key = u32::from_le_bytes(key).rotate_right(shift).to_le_bytes();
    let wide = u128::from(u32::from_ne_bytes(key)) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
    (key, wide)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: u64) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[((offset + i as u64) % 4) as usize];
        }
    }

    #[test]
    fn agrees_with_the_byte_by_byte_definition_at_every_offset_and_length() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            for offset in 0..8u64 {
                let mut fast = data[..len].to_vec();
                let mut slow = data[..len].to_vec();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn the_ascii_variant_unmasks_alike_and_finds_any_high_byte() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        let ascii: Vec<u8> = (0..100u32).map(|i| b'a' + (i % 26) as u8).collect();
        for len in 0..ascii.len() {
            for offset in 0..4u64 {
                let mut masked = ascii[..len].to_vec();
                naive(&mut masked, key, offset);
                let mut fast = masked.clone();
                assert!(apply_mask_ascii(&mut fast, key, offset), "len {len}");
                assert_eq!(fast, &ascii[..len], "len {len} offset {offset}");
                // One byte with its high bit set, at every position.
                for at in 0..len {
                    let mut plain = ascii[..len].to_vec();
                    plain[at] = 0xc3;
                    let mut masked = plain.clone();
                    naive(&mut masked, key, offset);
                    assert!(
                        !apply_mask_ascii(&mut masked, key, offset),
                        "len {len} at {at}"
                    );
                    assert_eq!(masked, plain);
                }
            }
        }
    }

    #[test]
    fn a_payload_masked_in_pieces_equals_one_pass() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for cut in [1, 3, 5, 33, 999] {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut as u64);
            assert_eq!(pieces, whole, "cut at {cut}");
        }
    }
}
