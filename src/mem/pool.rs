//! [`BufPool`]: anonymous buffers kept for reuse, so a process running many transfers maps
//! and faults its buffers once, not per transfer.

use super::anon::AnonBuf;
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

/// A bounded set of [`AnonBuf`]s waiting for reuse. Usable as a `static`
/// (`static POOL: BufPool = BufPool::new(32 << 20);`).
///
/// [`BufPool::take`] hands out a kept buffer of the same capacity when there is one, a fresh
/// one otherwise; dropping the [`PooledBuf`] gives the buffer back while the pool holds less
/// than its limit, and unmaps it otherwise.
pub struct BufPool {
    free: Mutex<Vec<AnonBuf>>,
    limit: usize,
}

impl BufPool {
    /// An empty pool that keeps at most `limit_bytes` of buffers (by capacity).
    pub const fn new(limit_bytes: usize) -> BufPool {
        BufPool {
            free: Mutex::new(Vec::new()),
            limit: limit_bytes,
        }
    }

    /// A buffer of `len` bytes: a kept one of the same capacity when there is one (its
    /// contents are what its last user left: see [`PooledBuf::reused`] and
    /// [`AnonBuf::zero`]), else a fresh one (zeros). Fails as [`AnonBuf::new`] does.
    pub fn take(&self, len: usize) -> io::Result<PooledBuf<'_>> {
        let cap = super::page_align(len);
        let kept = cap.and_then(|cap| {
            let mut free = self.lock();
            // Huge buffers are never kept, so every kept one is of ordinary pages.
            let i = free.iter().position(|b| b.capacity() == cap)?;
            Some(free.swap_remove(i))
        });
        let (buf, reused) = match kept {
            Some(mut b) => {
                b.set_len(len);
                (b, true)
            }
            None => (AnonBuf::new(len)?, false),
        };
        Ok(PooledBuf {
            buf: ManuallyDrop::new(buf),
            pool: self,
            reused,
        })
    }

    /// A fresh buffer of `len` bytes in huge pages ([`AnonBuf::huge`]), which the pool hands
    /// out but never keeps: dropping it unmaps it.
    pub fn take_huge(&self, len: usize) -> io::Result<PooledBuf<'_>> {
        let buf = AnonBuf::huge(len)?;
        Ok(PooledBuf {
            buf: ManuallyDrop::new(buf),
            pool: self,
            reused: false,
        })
    }

    /// Bytes (capacity) of the buffers waiting in the pool.
    pub fn held_bytes(&self) -> usize {
        self.lock().iter().map(AnonBuf::capacity).sum()
    }

    /// The list of kept buffers. A panic while the lock was held cannot leave the list
    /// inconsistent (it is only pushed to, searched and swap-removed from), so a poisoned
    /// lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, Vec<AnonBuf>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn give_back(&self, buf: AnonBuf) {
        if buf.is_huge() {
            // Not kept: whole 2 MiB pages idle in the pool would stay resident while the
            // process moves on to transfers that use other buffers (a restore after a direct
            // save). Mapping and faulting one again costs a few huge-page faults per transfer.
            return;
        }
        let mut free = self.lock();
        let held: usize = free.iter().map(AnonBuf::capacity).sum();
        if held + buf.capacity() <= self.limit {
            free.push(buf);
            return;
        }
        drop(free);
        // `buf` drops here, unmapping its memory outside the lock.
    }
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("held_bytes", &self.held_bytes())
            .field("limit", &self.limit)
            .finish()
    }
}

/// A buffer taken from a [`BufPool`], given back when dropped. Dereferences to the
/// [`AnonBuf`] (and on to `[u8]`).
pub struct PooledBuf<'p> {
    /// Taken out only in `drop` or `into_inner`, after which `self` is never used again.
    buf: ManuallyDrop<AnonBuf>,
    pool: &'p BufPool,
    reused: bool,
}

impl PooledBuf<'_> {
    /// Whether the buffer was used before: then it holds its previous user's bytes, not
    /// zeros ([`AnonBuf::zero`] clears it).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The buffer, kept out of the pool (unmapped when it drops).
    pub fn into_inner(self) -> AnonBuf {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped (ManuallyDrop) nor used again, so the buffer is taken
        // exactly once; the other fields need no drop.
        unsafe { ManuallyDrop::take(&mut me.buf) }
    }
}

impl Deref for PooledBuf<'_> {
    type Target = AnonBuf;
    fn deref(&self) -> &AnonBuf {
        &self.buf
    }
}

impl DerefMut for PooledBuf<'_> {
    fn deref_mut(&mut self) -> &mut AnonBuf {
        &mut self.buf
    }
}

impl Drop for PooledBuf<'_> {
    fn drop(&mut self) {
        // SAFETY: drop runs once and nothing uses `self.buf` after it, so the buffer is taken
        // exactly once.
        let buf = unsafe { ManuallyDrop::take(&mut self.buf) };
        self.pool.give_back(buf);
    }
}

impl fmt::Debug for PooledBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("buf", &*self.buf)
            .field("reused", &self.reused)
            .finish()
    }
}
