//! The simulated device's state content: a counter-based generator.
//!
//! Byte `o` of a state with seed `s` is byte `o % 8` (little-endian) of word `o / 8`, where
//! word `i` is `v ^ (v >> 29) ^ a` with `v = b + i * K` and `(a, b)` derived from the seed.
//! Nothing is stored: saving generates bytes straight into the caller's buffer and restoring
//! compares incoming bytes against the same function, so a many-GiB state costs no memory.
//! Consecutive words differ by an addition, so the loops vectorise and run at store bandwidth.

/// Golden-ratio increment between consecutive words.
const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 finaliser, used to derive the per-seed keys.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes words `v, v + K, ...` (mixed with `a`) into `body` (a multiple of 8 bytes).
#[inline(always)]
fn fill_body(body: &mut [u8], mut v: u64, a: u64) {
    for c in body.chunks_exact_mut(8) {
        c.copy_from_slice(&(v ^ (v >> 29) ^ a).to_le_bytes());
        v = v.wrapping_add(K);
    }
}

/// Whether `body` holds words `v, v + K, ...` (mixed with `a`). Blocks of 512 words: an
/// OR-accumulated difference per block keeps the inner loop branch-free (vectorisable) and
/// still stops early on a mismatch.
#[inline(always)]
fn verify_body(body: &[u8], mut v: u64, a: u64) -> bool {
    for block in body.chunks(4096) {
        let mut diff = 0u64;
        for c in block.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            diff |= u64::from_le_bytes(b) ^ (v ^ (v >> 29) ^ a);
            v = v.wrapping_add(K);
        }
        if diff != 0 {
            return false;
        }
    }
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
/// # Safety
/// The CPU must support AVX2.
unsafe fn fill_avx2(body: &mut [u8], v: u64, a: u64) {
    fill_body(body, v, a)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
/// # Safety
/// The CPU must support AVX2.
unsafe fn verify_avx2(body: &[u8], v: u64, a: u64) -> bool {
    verify_body(body, v, a)
}

/// [`fill_body`] with 256-bit vectors when the CPU has AVX2 (twice the SSE2 baseline's width).
fn fill_words(body: &mut [u8], v: u64, a: u64) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { fill_avx2(body, v, a) };
    }
    fill_body(body, v, a)
}

/// [`verify_body`] with 256-bit vectors when the CPU has AVX2.
fn verify_words(body: &[u8], v: u64, a: u64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { verify_avx2(body, v, a) };
    }
    verify_body(body, v, a)
}

/// The generator for one seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gen {
    a: u64,
    b: u64,
}

impl Gen {
    /// The generator of seed `seed`.
    pub(crate) fn new(seed: u64) -> Gen {
        Gen {
            a: mix64(seed ^ 0x5EED_5EED_5EED_5EED),
            b: mix64(seed.wrapping_add(K)),
        }
    }

    /// Word `i` of the state.
    #[inline(always)]
    pub(crate) fn word(&self, i: u64) -> u64 {
        let v = self.b.wrapping_add(i.wrapping_mul(K));
        v ^ (v >> 29) ^ self.a
    }

    /// Writes the state bytes `offset..offset + dst.len()` into `dst`.
    pub(crate) fn fill(&self, offset: u64, dst: &mut [u8]) {
        let mut pos = 0usize;
        let mut word = offset / 8;
        let skew = (offset % 8) as usize;
        if skew != 0 {
            let w = self.word(word).to_le_bytes();
            let n = (8 - skew).min(dst.len());
            dst[..n].copy_from_slice(&w[skew..skew + n]);
            pos = n;
            word += 1;
        }
        let full = (dst.len() - pos) / 8;
        let v = self.b.wrapping_add(word.wrapping_mul(K));
        fill_words(&mut dst[pos..pos + full * 8], v, self.a);
        pos += full * 8;
        word += full as u64;
        if pos < dst.len() {
            let w = self.word(word).to_le_bytes();
            let n = dst.len() - pos;
            dst[pos..].copy_from_slice(&w[..n]);
        }
    }

    /// Checks that `src` equals the state bytes `offset..offset + src.len()`. Returns the
    /// state offset of the first differing byte, or `None` when everything matches.
    pub(crate) fn verify(&self, offset: u64, src: &[u8]) -> Option<u64> {
        let mut pos = 0usize;
        let mut word = offset / 8;
        let skew = (offset % 8) as usize;
        if skew != 0 {
            let w = self.word(word).to_le_bytes();
            let n = (8 - skew).min(src.len());
            if src[..n] != w[skew..skew + n] {
                return self.first_mismatch(offset, src);
            }
            pos = n;
            word += 1;
        }
        let full = (src.len() - pos) / 8;
        let v = self.b.wrapping_add(word.wrapping_mul(K));
        if !verify_words(&src[pos..pos + full * 8], v, self.a) {
            return self.first_mismatch(offset, src);
        }
        pos += full * 8;
        word += full as u64;
        if pos < src.len() {
            let w = self.word(word).to_le_bytes();
            if src[pos..] != w[..src.len() - pos] {
                return self.first_mismatch(offset, src);
            }
        }
        None
    }

    /// Slow path: the exact offset of the first wrong byte.
    fn first_mismatch(&self, offset: u64, src: &[u8]) -> Option<u64> {
        let mut buf = [0u8; 4096];
        let mut done = 0usize;
        while done < src.len() {
            let n = (src.len() - done).min(buf.len());
            let o = offset + done as u64;
            self.fill(o, &mut buf[..n]);
            if let Some(i) = (0..n).find(|&i| buf[i] != src[done + i]) {
                return Some(o + i as u64);
            }
            done += n;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_position_independent() {
        let g = Gen::new(7);
        let mut whole = vec![0u8; 1000];
        g.fill(13, &mut whole);
        // Any split of the range produces the same bytes.
        for split in [0usize, 1, 3, 8, 11, 500, 999, 1000] {
            let mut parts = vec![0u8; 1000];
            let (x, y) = parts.split_at_mut(split);
            g.fill(13, x);
            g.fill(13 + split as u64, y);
            assert_eq!(parts, whole, "split at {split}");
        }
        assert_eq!(g.verify(13, &whole), None);
        assert_eq!(g.verify(14, &whole[1..]), None);
    }

    #[test]
    fn seeds_differ_and_mismatches_are_located() {
        let mut a = vec![0u8; 4096 * 3];
        let mut b = vec![0u8; 4096 * 3];
        Gen::new(1).fill(0, &mut a);
        Gen::new(2).fill(0, &mut b);
        assert_ne!(a, b);
        assert_eq!(Gen::new(2).verify(0, &a), Some(0));
        let mut c = a.clone();
        c[9000] ^= 0x40;
        assert_eq!(Gen::new(1).verify(5, &c[5..]), Some(9000));
        c[9000] ^= 0x40;
        c[4096 * 3 - 1] ^= 1;
        assert_eq!(Gen::new(1).verify(0, &c), Some(4096 * 3 - 1));
    }
}
