//! Whether a file's bytes are in the page cache, and bringing them there before a timed read.
//!
//! The `restore <- file`, `pipe` and `tcp` blocks read a saved state "from the page cache": the
//! row means what a restore costs when the file is in memory. Between the untimed save and
//! the timed reads, the kernel may have dropped part of the file (memory pressure, or a
//! proactive reclaimer such as DAMON's `pageout` scheme for cold unmapped page cache, which
//! takes a file nobody read for a minute); a row would then time the disk as well, and
//! differently for each loop, since each reads a different file. So every such source is
//! checked with `mincore(2)` and its missing pages are read in, untimed, before the transfer;
//! what still is not resident is returned for the report to say.

use crate::bench::buf::page_buf;
use crate::mem::page_size;
use crate::migration::engine::{page_flags, resident_bytes};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How much of a file's first `len` bytes was in the page cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::bench) struct Residency {
    /// Bytes in the page cache (whole pages, the last one cut at `len`).
    pub resident: u64,
    /// Bytes asked about.
    pub len: u64,
}

impl Residency {
    /// Bytes not in the page cache.
    pub fn missing(&self) -> u64 {
        self.len - self.resident
    }
}

/// One flag per page of `file`'s first `len` bytes: whether the page is in the page cache.
fn pages(file: &File, len: u64) -> io::Result<Vec<bool>> {
    let bytes = usize::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes do not fit the address space"),
        )
    })?;
    let mut flags = Vec::new();
    page_flags(file, 0, bytes, &mut flags)?;
    Ok(flags.into_iter().map(|v| v & 1 != 0).collect())
}

/// How much of `file`'s first `len` bytes is in the page cache now.
pub(in crate::bench) fn residency(file: &File, len: u64) -> io::Result<Residency> {
    Ok(Residency {
        resident: resident_bytes(file, len)?,
        len,
    })
}

/// Reads every page of `file`'s first `len` bytes that is not in the page cache (runs of
/// missing pages, through a 1 MiB buffer), then says how much is resident: all of it unless
/// the kernel dropped pages again meanwhile.
pub(in crate::bench) fn warm(file: &File, len: u64) -> io::Result<Residency> {
    let flags = pages(file, len)?;
    if flags.iter().all(|&r| r) {
        return Ok(Residency { resident: len, len });
    }
    let page = page_size() as u64;
    let mut buf = page_buf(1 << 20)?;
    let mut i = 0;
    while i < flags.len() {
        if flags[i] {
            i += 1;
            continue;
        }
        let run = flags[i..].iter().take_while(|&&r| !r).count();
        let (mut at, end) = (i as u64 * page, ((i + run) as u64 * page).min(len));
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            match file.read_at(&mut buf[..want], at) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the file ended at {at} of {len} bytes"),
                    ))
                }
                Ok(n) => at += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        i += run;
    }
    residency(file, len)
}

/// Drops `file`'s clean pages from the page cache (`POSIX_FADV_DONTNEED`), so that what
/// reads it next finds it on the disk. `Ok(false)` where the kernel has no `fadvise(2)`
/// (`ENOSYS`: built without `CONFIG_ADVISE_SYSCALLS`, as the real-kernel bed's is): the
/// pages stay, and a reader that asks the page cache finds them there.
pub(in crate::bench) fn drop_cached(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: fadvise on a descriptor `file` keeps open only advises the kernel.
    match unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } {
        0 => Ok(true),
        libc::ENOSYS => Ok(false),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// A file of `len` bytes whose pages are dropped from the page cache (after `fsync`, so
    /// they are clean and `POSIX_FADV_DONTNEED` can drop them); `None` where this filesystem
    /// keeps them anyway (tmpfs holds its files only in the page cache).
    fn dropped_file(len: usize) -> Option<(tempfile::TempDir, File)> {
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        f.write_all(&vec![0x5a; len]).unwrap();
        f.sync_all().unwrap();
        // SAFETY: a valid open fd; the call only advises the kernel about its page cache.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        let r = residency(&f, len as u64).unwrap();
        (r.resident < r.len).then_some((dir, f))
    }

    #[test]
    fn a_dropped_file_is_read_back_into_the_page_cache() {
        let len = (64 << 10) + 1000;
        let Some((_dir, f)) = dropped_file(len) else {
            eprintln!("skipped: this filesystem keeps the file in the page cache");
            return;
        };
        let before = residency(&f, len as u64).unwrap();
        assert!(before.missing() > 0, "{before:?}");
        let after = warm(&f, len as u64).unwrap();
        assert_eq!(
            after,
            Residency {
                resident: len as u64,
                len: len as u64
            }
        );
        assert_eq!(residency(&f, len as u64).unwrap().missing(), 0);
    }

    /// Every path that reads the page cache opens its source with the file read in; an
    /// `O_DIRECT` source leaves the page cache alone.
    #[test]
    fn a_page_cache_source_is_whole_in_the_page_cache_when_it_opens() {
        use crate::bench::config::DataPath;
        use crate::bench::io::Source;
        let len = 200_000;
        for path in [DataPath::File, DataPath::Pipe, DataPath::Tcp] {
            let Some((dir, f)) = dropped_file(len) else {
                eprintln!("skipped: this filesystem keeps the file in the page cache");
                return;
            };
            let src = match Source::open(path, &dir.path().join("f"), len as u64) {
                Ok(s) => s,
                Err(e) if path == DataPath::Tcp && crate::bench::io::is_unavailable(&e) => continue,
                Err(e) => panic!("{path:?}: {e}"),
            };
            assert_eq!(src.cold(), 0, "{path:?}");
            assert_eq!(residency(&f, len as u64).unwrap().missing(), 0, "{path:?}");
            let (mut r, feed) = src.into_parts();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut got).unwrap();
            drop(r);
            Source::finish(feed).unwrap();
            assert_eq!(got, vec![0x5a; len], "{path:?}");
        }
        if let Some((dir, f)) = dropped_file(len) {
            let before = residency(&f, len as u64).unwrap();
            match Source::open(DataPath::FileDirect, &dir.path().join("f"), len as u64) {
                Ok(src) => assert_eq!(src.cold(), 0),
                Err(e) => eprintln!("O_DIRECT refused here: {e}"),
            }
            assert_eq!(residency(&f, len as u64).unwrap(), before);
        }
    }

    #[test]
    fn an_empty_file_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("e")).unwrap();
        assert_eq!(warm(&f, 0).unwrap(), Residency::default());
    }
}
