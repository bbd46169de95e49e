//! Deterministic test patterns addressed by absolute offset, so a range can be produced in any
//! chunking (by `bar fill` through an mmap, by `dma --fill` through a device's DMA engine, by a
//! dirty-page writer) and checked later by CRC without keeping a copy.
//!
//! Byte `i` of the pattern for `seed` is byte `i % 8` (little endian) of
//! `splitmix64(seed * K + i / 8)`: every 8-byte word differs, seeds give unrelated patterns,
//! and no page of a pattern is all zeroes in practice.

/// The 64-bit word of the pattern covering bytes `8 * word .. 8 * word + 8`.
pub fn word(seed: u64, word: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0xd605_bbb5_8c8a_bbd3)
        .wrapping_add(word)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern bytes for absolute offsets `offset .. offset + buf.len()`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut i = 0usize;
    let mut off = offset;
    // Unaligned head.
    while i < buf.len() && off % 8 != 0 {
        buf[i] = word(seed, off / 8).to_le_bytes()[(off % 8) as usize];
        i += 1;
        off += 1;
    }
    let mut chunks = buf[i..].chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&word(seed, off / 8).to_le_bytes());
        off += 8;
    }
    for (k, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b = word(seed, off / 8).to_le_bytes()[k];
    }
}

/// The first position where `buf` differs from the pattern at `offset`, if any.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    let mut want = vec![0u8; buf.len().min(1 << 20)];
    let mut done = 0usize;
    while done < buf.len() {
        let n = (buf.len() - done).min(want.len());
        fill(seed, offset + done as u64, &mut want[..n]);
        if let Some(p) = buf[done..done + n]
            .iter()
            .zip(&want[..n])
            .position(|(a, b)| a != b)
        {
            return Some(done + p);
        }
        done += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_change_the_bytes() {
        let mut whole = vec![0u8; 1000];
        fill(7, 13, &mut whole);
        let mut parts = vec![0u8; 1000];
        let (a, rest) = parts.split_at_mut(5);
        fill(7, 13, a);
        let (b, c) = rest.split_at_mut(331);
        fill(7, 18, b);
        fill(7, 349, c);
        assert_eq!(whole, parts);
        assert_eq!(first_mismatch(7, 13, &whole), None);
    }

    #[test]
    fn seeds_and_offsets_differ() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill(1, 0, &mut a);
        fill(2, 0, &mut b);
        assert_ne!(a, b);
        fill(1, 8, &mut b);
        assert_eq!(a[8..], b[..56]);
        b[20] ^= 1;
        assert_eq!(first_mismatch(1, 8, &b), Some(20));
    }
}
