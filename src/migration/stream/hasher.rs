//! The incremental form of the format's checksum, for data that arrives in pieces (a
//! payload read from a socket, the whole-stream checksum over the chunk headers).
//!
//! It is `twox-hash`'s XXH3-64 hasher, held at a 64-byte boundary. The hasher keeps its
//! 64-byte stripe accumulator inside itself; a build whose loop loads and stores that
//! accumulator on every 64-byte stripe (most builds of this crate; e9d1efc's kept it in
//! registers) runs at the speed of those two 32-byte stores and loads. Unaligned, where the
//! hasher sat on the stack decided whether one of them straddled a 4 KiB page: then every
//! stripe stalled on a page-split store before the next stripe could load it back. One
//! build (57c3a99) put a received payload's hasher at page offset `0xed0`, its accumulator
//! across the page, and the live-over-TCP bench row took 2.2 s instead of 1.3 s; the same
//! build with this alignment ran 1.30-1.38 s, and with the accumulator moved across a page
//! on purpose 2.32 s again (`hw-notes/bench.md`, session 24). Aligned to 64, the
//! accumulator (at offset 0x120 in `twox-hash` 2.1) never straddles a page or a cache
//! line, whatever the build.

use twox_hash::XxHash3_64;

/// XXH3-64 (seed 0, default secret) computed over pieces: the same value as
/// [`checksum`](super::checksum) of the pieces joined.
#[repr(align(64))]
pub(crate) struct Hasher(XxHash3_64);

impl Hasher {
    /// A hasher that has seen nothing.
    pub(crate) fn new() -> Hasher {
        Hasher(XxHash3_64::new())
    }

    /// Adds `piece` to what was hashed.
    #[inline]
    pub(crate) fn write(&mut self, piece: &[u8]) {
        std::hash::Hasher::write(&mut self.0, piece);
    }

    /// The checksum of everything written so far.
    pub(crate) fn finish(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::stream::checksum;

    #[test]
    fn pieces_hash_as_the_whole() {
        let data: Vec<u8> = (0..3 * 4096 + 77u32)
            .map(|i| (i * 131 % 251) as u8)
            .collect();
        for piece in [1, 24, 64, 1000, 4096, data.len()] {
            let mut h = Hasher::new();
            data.chunks(piece).for_each(|p| h.write(p));
            assert_eq!(h.finish(), checksum(&data), "pieces of {piece} bytes");
        }
    }

    #[test]
    fn every_hasher_starts_at_a_cache_line() {
        // Where the compiler puts one: in a struct after an odd-sized field, in an Option,
        // on the stack, in a Vec.
        struct After(u8, Hasher);
        let a = After(1, Hasher::new());
        let o = Some(Hasher::new());
        let v: Vec<Hasher> = (0..3).map(|_| Hasher::new()).collect();
        let at = |h: &Hasher| h as *const Hasher as usize % 64;
        assert_eq!(at(&a.1), 0);
        assert_eq!(o.as_ref().map(at), Some(0));
        assert!(v.iter().all(|h| at(h) == 0));
        assert_eq!(a.0, 1);
    }
}
