//! Files opened with `O_DIRECT`: every read and write must be whole blocks, at block offsets,
//! from page-aligned memory. Writes go through the engine's
//! [`DirectWriter`](crate::migration::engine::DirectWriter) (the raw loops' page-aligned
//! buffers and the engine's raw frames after the first straight to the file; the rest
//! staged), reads through its [`DirectReader`](crate::migration::engine::DirectReader)
//! (the raw loops' page-aligned buffers straight from the file, smaller or unaligned reads
//! through its stage).

pub(in crate::bench) use crate::migration::engine::{DirectReader, DirectWriter};
use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for `O_DIRECT` writing (created, truncated). `Err` with `EINVAL` when the
/// file system does not support `O_DIRECT` (tmpfs, for one).
pub(in crate::bench) fn create(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Opens `path` for `O_DIRECT` reading.
pub(in crate::bench) fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}
