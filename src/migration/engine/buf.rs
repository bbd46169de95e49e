//! The engine's transfer buffers: page-aligned [`crate::mem::AnonBuf`]s from one process-wide
//! [`BufPool`], zeroed whenever they are reused.

use crate::mem::{BufPool, PooledBuf};
use crate::migration::{MigrationError, Result};

/// Buffers kept for the next operation of this process, bounded to 32 MiB: a VMM or a
/// benchmark running many transfers maps and faults its buffers once, not per transfer.
static POOL: BufPool = BufPool::new(32 << 20);

/// A page-aligned buffer of `len` bytes that reads as zeros when handed out.
///
/// It comes from the process's [`BufPool`]: a fresh mapping is zero-filled by the kernel and
/// faulted in on first touch (creating one costs a system call, not a pass over its bytes,
/// so a tiny state such as mtty's ~100 bytes does not pay for the full ring); a mapping
/// reused from the pool held an earlier operation's bytes (another device's state) and is
/// zeroed before it is handed out again, so no buffer ever shows one operation's data to
/// another. Dropping it gives the mapping back to the pool (or unmaps it when the pool is
/// full).
pub(crate) struct AlignedBuf(PooledBuf<'static>);

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes are device state: never printed.
        f.debug_struct("AlignedBuf")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl AlignedBuf {
    /// A page-aligned buffer of `len` zero bytes (at least one page is mapped), from the
    /// process's pool.
    ///
    /// # Errors
    /// [`MigrationError::Buffers`] when the kernel cannot provide the mapping (out of
    /// memory, or the process's address-space limit).
    pub(crate) fn new(len: usize) -> Result<AlignedBuf> {
        AlignedBuf::chunk(len, false)
    }

    /// [`AlignedBuf::new`] in transparent huge pages ([`crate::mem::AnonBuf::huge`]): for
    /// the stages of direct I/O, so each of their reads or writes is one disk request.
    pub(crate) fn huge(len: usize) -> Result<AlignedBuf> {
        AlignedBuf::chunk(len, true)
    }

    /// A chunk buffer: [`AlignedBuf::huge`] when `huge`, else [`AlignedBuf::new`].
    pub(crate) fn chunk(len: usize, huge: bool) -> Result<AlignedBuf> {
        AlignedBuf::from_pool(&POOL, len, huge)
    }

    /// [`AlignedBuf::chunk`] from `pool`: a reused buffer is zeroed before it is returned.
    fn from_pool(pool: &'static BufPool, len: usize, huge: bool) -> Result<AlignedBuf> {
        let taken = if huge {
            pool.take_huge(len)
        } else {
            pool.take(len)
        };
        let mut b = taken.map_err(|source| MigrationError::Buffers { bytes: len, source })?;
        if b.reused() {
            // Its bytes are an earlier operation's: they never reach a new owner.
            b.zero();
        }
        Ok(AlignedBuf(b))
    }
}

/// `e` (a [`MigrationError::Buffers`]) as an I/O error of its OS error's kind, for the
/// engine's readers and writers whose interface speaks `io::Error`; the message is kept whole.
pub(crate) fn io_error(e: MigrationError) -> std::io::Error {
    let kind = match &e {
        MigrationError::Buffers { source, .. } => source.kind(),
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e)
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of its own, so no other test takes the buffer in between: the second buffer is
    /// certainly the first one's mapping, which held 0xa5 bytes.
    #[test]
    fn a_reused_mapping_reads_as_zeros() {
        static PRIVATE: BufPool = BufPool::new(1 << 20);
        let mut a = AlignedBuf::from_pool(&PRIVATE, 3 * 4096 - 100, false).unwrap();
        a.fill(0xa5);
        let addr = a.as_ptr() as usize;
        drop(a);
        assert_eq!(PRIVATE.held_bytes(), 3 * 4096);
        let b = AlignedBuf::from_pool(&PRIVATE, 3 * 4096, false).unwrap();
        assert_eq!(b.as_ptr() as usize, addr, "the mapping was not reused");
        assert!(b.0.reused());
        assert!(b.iter().all(|x| *x == 0), "a reused buffer kept old bytes");
    }
}
