//! The one rule for a chunk (buffer) size, checked by every entry point that takes one: the
//! one-call engine's [`Options::buffer_size`](super::engine::Options::buffer_size),
//! [`SourceSession::with_chunk_size`](super::session::SourceSession::with_chunk_size) and the
//! transport's `migrate_to`.

use super::stream::MAX_CHUNK_LEN;
use super::{MigrationError, Result};

/// Smallest chunk (buffer) size accepted: below it the stream's framing (24 bytes per chunk)
/// outweighs the data.
pub const MIN_BUFFER: usize = 4096;

/// `size` when it lies in [`MIN_BUFFER`]..=[`MAX_CHUNK_LEN`].
///
/// # Errors
///
/// [`MigrationError::InvalidBufferSize`] otherwise.
pub(crate) fn checked(size: usize) -> Result<usize> {
    if (MIN_BUFFER..=MAX_CHUNK_LEN as usize).contains(&size) {
        Ok(size)
    } else {
        Err(MigrationError::InvalidBufferSize { size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_outside_4_kib_to_64_mib_are_refused_at_both_ends() {
        for bad in [0, 1, MIN_BUFFER - 1, MAX_CHUNK_LEN as usize + 1, usize::MAX] {
            assert!(
                matches!(checked(bad), Err(MigrationError::InvalidBufferSize { size }) if size == bad),
                "{bad} was accepted"
            );
        }
        for good in [MIN_BUFFER, 1 << 20, MAX_CHUNK_LEN as usize] {
            assert_eq!(checked(good).ok(), Some(good));
        }
    }
}
