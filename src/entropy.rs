//! Random bytes that never wait for the kernel's entropy pool.
//!
//! Temporary file names and mdev UUIDs need uniqueness, not secrecy. A freshly booted
//! kernel whose pool is not initialised yet blocks `getrandom(flags = 0)` (what the `uuid`
//! crate's v4 generator uses) for minutes; these helpers ask with `GRND_INSECURE` (Linux
//! 5.6+), then `GRND_NONBLOCK`, and fall back to mixing the clock, the process id and a
//! counter, so they return at once on any kernel.

use std::hash::Hasher as _;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn getrandom(buf: &mut [u8], flags: libc::c_uint) -> bool {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`, which we own
        // mutably; getrandom writes at most that many bytes.
        let n = unsafe {
            libc::getrandom(
                buf[got..].as_mut_ptr().cast::<libc::c_void>(),
                buf.len() - got,
                flags,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        got += n as usize;
    }
    true
}

/// Fills `buf` with random bytes without ever blocking (see the module docs).
pub fn fill(buf: &mut [u8]) {
    if getrandom(buf, libc::GRND_INSECURE) || getrandom(buf, libc::GRND_NONBLOCK) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, piece) in buf.chunks_mut(8).enumerate() {
        let mut h = twox_hash::XxHash3_64::new();
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(i);
        h.write_usize(piece.as_ptr() as usize);
        let v = h.finish().to_le_bytes();
        piece.copy_from_slice(&v[..piece.len()]);
    }
}

/// A random 64-bit value (see [`fill`]).
pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}

/// A version-4 UUID from [`fill`]'s bytes: never blocks on the entropy pool.
pub fn uuid_v4() -> uuid::Uuid {
    let mut b = [0u8; 16];
    fill(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_v4_and_differ() {
        let (a, b) = (super::uuid_v4(), super::uuid_v4());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
    }

    #[test]
    fn fallback_mix_fills_every_byte_length() {
        let mut b = [0u8; 13];
        super::fill(&mut b);
        assert!(b.iter().any(|&x| x != 0));
    }
}
