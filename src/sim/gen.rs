//! The simulated device's state content: a counter-based generator.
//!
//! Byte `o` of a state with seed `s` is byte `o % 8` (little-endian) of word `o / 8`, where
//! word `i` is `v ^ (v >> 29) ^ a` with `v = b + i * K` and `(a, b)` derived from the seed.
//! Nothing is stored: saving generates bytes straight into the caller's buffer and restoring
//! compares incoming bytes against the same function, so a many-GiB state costs no memory.
//! Consecutive words differ by an addition, so the loops vectorise and run at store bandwidth.
//!
//! A state may have **zero pages** (`zero-pages=FRACTION`: device memory is often mostly
//! empty): 4 KiB page `p` is all zeros when the low 16 bits of `mix64(p ^ z)` (`z` derived
//! from the seed) are below `zero`, the fraction in 65536ths; the other pages hold the words
//! above. So the content of a state is a function of `(seed, zero)`, chosen page by page,
//! spread over the whole state.

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

/// Size of the pages that are zero or not as a whole.
pub(crate) const ZERO_PAGE: u64 = 4096;
/// `zero` value of a state whose every page is zero (the fraction's denominator).
pub(crate) const ZERO_ALL: u32 = 1 << 16;

/// The generator for one seed (and zero-page fraction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gen {
    a: u64,
    b: u64,
    /// Fraction of zero pages, in 65536ths (0: none, [`ZERO_ALL`]: all).
    zero: u32,
    /// Key of the zero-page choice.
    z: u64,
}

impl Gen {
    /// The generator of seed `seed`, without zero pages.
    pub(crate) fn new(seed: u64) -> Gen {
        Gen::with_zero_pages(seed, 0)
    }

    /// The generator of seed `seed` with `zero` 65536ths of its pages all zeros (clamped to
    /// [`ZERO_ALL`]).
    pub(crate) fn with_zero_pages(seed: u64, zero: u32) -> Gen {
        Gen {
            a: mix64(seed ^ 0x5EED_5EED_5EED_5EED),
            b: mix64(seed.wrapping_add(K)),
            zero: zero.min(ZERO_ALL),
            z: mix64(seed ^ 0x2E50_2E50_2E50_2E50),
        }
    }

    /// The zero-page fraction, in 65536ths.
    pub(crate) fn zero_pages(&self) -> u32 {
        self.zero
    }

    /// Whether 4 KiB page `page` of the state is all zeros.
    #[inline]
    pub(crate) fn is_zero_page(&self, page: u64) -> bool {
        self.zero >= ZERO_ALL
            || (self.zero > 0 && ((mix64(page ^ self.z) & 0xFFFF) as u32) < self.zero)
    }

    /// Splits `offset..offset + len` at page boundaries: `f(start, len, zero)` for each piece,
    /// relative to `offset`. One piece when the state has no zero pages.
    #[inline]
    fn pieces(&self, offset: u64, len: usize, mut f: impl FnMut(usize, usize, bool) -> bool) {
        if self.zero == 0 {
            f(0, len, false);
            return;
        }
        let mut pos = 0usize;
        while pos < len {
            let o = offset + pos as u64;
            let page = o / ZERO_PAGE;
            let n = ((ZERO_PAGE - o % ZERO_PAGE) as usize).min(len - pos);
            // Merge runs of pages of the same kind, so long runs are one call.
            let zero = self.is_zero_page(page);
            let mut end = pos + n;
            while end < len && self.is_zero_page((offset + end as u64) / ZERO_PAGE) == zero {
                end = (end + ZERO_PAGE as usize).min(len);
            }
            if !f(pos, end - pos, zero) {
                return;
            }
            pos = end;
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
        let len = dst.len();
        self.pieces(offset, len, |at, n, zero| {
            let d = &mut dst[at..at + n];
            if zero {
                d.fill(0);
            } else {
                self.fill_words_at(offset + at as u64, d);
            }
            true
        });
    }

    /// [`Gen::fill`] ignoring zero pages.
    fn fill_words_at(&self, offset: u64, dst: &mut [u8]) {
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
        let mut ok = true;
        self.pieces(offset, src.len(), |at, n, zero| {
            let s = &src[at..at + n];
            ok = if zero {
                all_zero(s)
            } else {
                self.words_match(offset + at as u64, s)
            };
            ok
        });
        if ok {
            None
        } else {
            self.first_mismatch(offset, src)
        }
    }

    /// Whether `src` holds the words at `offset` (ignoring zero pages).
    fn words_match(&self, offset: u64, src: &[u8]) -> bool {
        let mut pos = 0usize;
        let mut word = offset / 8;
        let skew = (offset % 8) as usize;
        if skew != 0 {
            let w = self.word(word).to_le_bytes();
            let n = (8 - skew).min(src.len());
            if src[..n] != w[skew..skew + n] {
                return false;
            }
            pos = n;
            word += 1;
        }
        let full = (src.len() - pos) / 8;
        let v = self.b.wrapping_add(word.wrapping_mul(K));
        if !verify_words(&src[pos..pos + full * 8], v, self.a) {
            return false;
        }
        pos += full * 8;
        word += full as u64;
        if pos < src.len() {
            let w = self.word(word).to_le_bytes();
            if src[pos..] != w[..src.len() - pos] {
                return false;
            }
        }
        true
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

/// Whether every byte of `b` is zero (8 bytes at a time, OR-accumulated so it vectorises).
fn all_zero(b: &[u8]) -> bool {
    let mut acc = 0u64;
    let mut words = b.chunks_exact(8);
    for c in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        acc |= u64::from_le_bytes(w);
    }
    acc == 0 && words.remainder().iter().all(|&x| x == 0)
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

    #[test]
    fn zero_pages_are_zero_and_verified() {
        let g = Gen::with_zero_pages(3, ZERO_ALL / 2);
        let pages = 256u64;
        let mut st = vec![0u8; (pages * ZERO_PAGE) as usize];
        g.fill(0, &mut st);
        let mut zeros = 0;
        for p in 0..pages {
            let page = &st[(p * ZERO_PAGE) as usize..((p + 1) * ZERO_PAGE) as usize];
            let z = g.is_zero_page(p);
            assert_eq!(page.iter().all(|&b| b == 0), z, "page {p}");
            zeros += z as u64;
        }
        // About half, chosen pseudo-randomly.
        assert!((96..=160).contains(&zeros), "{zeros} zero pages of {pages}");
        // Position independence across page boundaries, verification of both kinds.
        let mut parts = vec![0u8; st.len() - 100];
        let (x, y) = parts.split_at_mut(5000);
        g.fill(100, x);
        g.fill(5100, y);
        assert_eq!(&parts[..], &st[100..]);
        assert_eq!(g.verify(100, &st[100..]), None);
        let zp = (0..pages).find(|&p| g.is_zero_page(p)).unwrap();
        let mut c = st.clone();
        c[(zp * ZERO_PAGE + 7) as usize] = 1;
        assert_eq!(g.verify(0, &c), Some(zp * ZERO_PAGE + 7));
        // None and all.
        assert!(!(0..pages).any(|p| Gen::new(3).is_zero_page(p)));
        let all = Gen::with_zero_pages(3, ZERO_ALL);
        assert_eq!(all.verify(12345, &[0u8; 9000]), None);
        assert_eq!(all.zero_pages(), ZERO_ALL);
        // Zero pages keep the other pages' words: the same bytes as without zero pages.
        let mut plain = vec![0u8; st.len()];
        Gen::new(3).fill(0, &mut plain);
        let nz = (0..pages).find(|&p| !g.is_zero_page(p)).unwrap() as usize;
        let r = nz * ZERO_PAGE as usize..(nz + 1) * ZERO_PAGE as usize;
        assert_eq!(st[r.clone()], plain[r]);
    }
}
