//! The physical references of the paths: what the copies a path really makes cost without a
//! device ([`copy_rate`]: memory bandwidth), and what a sink or source moves on its own
//! (`sink_rate`, `source_rate`: the page cache, a disk, a pipe, a socket).
//!
//! Which copies a path makes (with a memory-backed device, whose reads and writes copy like a
//! driver's `copy_to_user` / `copy_from_user`):
//! - save into memory (a discarding writer): the device memory copied into one buffer, over
//!   and over ([`Copy::Out`]: reads the state from memory, the buffer stays in cache);
//! - device to device in the process: device memory -> buffer -> device memory
//!   ([`Copy::Through`]: reads and writes the state);
//! - everything else: the sink's or source's own rate with one buffer, cache-hot
//!   (`write(2)` over the page-cache file, into a new file with `fsync`, with `O_DIRECT`,
//!   into a pipe or a loopback socket read by another thread; `read(2)` from them, a socket
//!   on a receive low-water mark), which is what the device's copy is added to.
//!
//! A path that copies nothing (a generated simulator state, which costs no memory traffic) has
//! no memory reference: a ratio against memcpy would say nothing about it.

use super::buf::{io_buf, page_buf};
use super::io::{write_repeated, Sink, SinkTarget, Source, SourceReader};
use super::stats::Summary;
use crate::migration::engine::{set_rcvlowat, LOW_WATER_MAX};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Which memory copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    /// A region copied into one reused buffer (a save's device reads).
    Out,
    /// One buffer copied over a region (a restore's device writes).
    In,
    /// A region copied through one buffer into another region (device to device).
    Through,
}

impl Copy {
    /// How many regions it holds in memory ([`copy_rate`]'s source, and for
    /// [`Copy::Through`] its destination).
    pub fn regions(self) -> u64 {
        match self {
            Copy::Out | Copy::In => 1,
            Copy::Through => 2,
        }
    }

    /// How the report names it.
    pub fn describe(self, buffer: usize, region: usize) -> String {
        let (b, r) = (
            crate::units::format_bytes(buffer as u64),
            crate::units::format_bytes(region as u64),
        );
        match self {
            Copy::Out => {
                format!("memory copy-out: a {r} region copied {b} at a time into one buffer")
            }
            Copy::In => format!("memory copy-in: one {b} buffer copied over a {r} region"),
            Copy::Through => format!(
                "memory copy-through: a {r} region copied through one {b} buffer into another"
            ),
        }
    }
}

/// Largest region the memory references copy (above it the rate no longer changes).
pub const MAX_REGION: u64 = 1 << 30;

/// The region a memory reference copies for a `state`-byte device: the state itself (so a
/// state that fits the caches is compared with copies that fit them too), at most
/// [`MAX_REGION`], at least one buffer.
pub fn region_for(state: u64, buffer: u64) -> usize {
    state.clamp(buffer.max(1), MAX_REGION.max(buffer)) as usize
}

/// Bytes per second of `copy` at `buffer` bytes a time over `region` bytes (every page
/// faulted beforehand), the median of passes repeated for at least `min_time` (at least 3),
/// after one warm-up pass. `None` when the memory cannot be had.
pub fn copy_rate(copy: Copy, buffer: usize, region: usize, min_time: Duration) -> Option<f64> {
    let buffer = buffer.max(1);
    let region = region.max(buffer).div_ceil(buffer) * buffer;
    let mut src = page_buf(region).ok()?;
    for (i, b) in src.iter_mut().enumerate().step_by(4096) {
        *b = i as u8 | 1;
    }
    let mut dst = page_buf(if copy == Copy::Through { region } else { 0 }).ok()?;
    let mut buf = page_buf(buffer).ok()?;
    let mut pass = || {
        for off in (0..region).step_by(buffer) {
            match copy {
                Copy::Out => buf[..buffer].copy_from_slice(&src[off..off + buffer]),
                Copy::In => src[off..off + buffer].copy_from_slice(&buf[..buffer]),
                Copy::Through => {
                    buf[..buffer].copy_from_slice(&src[off..off + buffer]);
                    dst[off..off + buffer].copy_from_slice(&buf[..buffer]);
                }
            }
            std::hint::black_box(&mut buf[..]);
        }
        std::hint::black_box(&mut src[..]);
    };
    pass();
    let mut rates = Vec::new();
    let t0 = Instant::now();
    while rates.len() < 3 || t0.elapsed() < min_time {
        let t = Instant::now();
        pass();
        let s = t.elapsed().as_secs_f64();
        if s > 0.0 {
            rates.push(region as f64 / s);
        }
        if rates.len() >= 1000 {
            break;
        }
    }
    Summary::of(&rates).map(|s| s.median)
}

/// The receive low-water mark [`source_rate`] reads a socket on: [`LOW_WATER_MAX`], at most
/// the buffer (a read never waits for more than it can take).
pub(super) fn socket_mark(buffer: usize) -> usize {
    LOW_WATER_MAX.min(buffer.max(1))
}

/// Sets a socket source's receive low-water mark for reads into a `buffer`-byte buffer
/// ([`socket_mark`]); nothing for other sources.
fn mark_socket(reader: &SourceReader, buffer: usize) -> io::Result<()> {
    match reader {
        SourceReader::Tcp(t) => set_rcvlowat(t.as_raw_fd(), socket_mark(buffer) as libc::c_int),
        _ => Ok(()),
    }
}

/// A sink's own rate: `bytes` written from one cache-hot `buffer`-byte buffer (page-aligned,
/// so `O_DIRECT` takes it as it is) into a freshly opened sink, until it is finished
/// (`fsync`, the far end has read everything). Returns the seconds.
pub(super) fn sink_rate(target: &SinkTarget, bytes: u64, buffer: usize) -> io::Result<f64> {
    let mut buf = io_buf(buffer.max(1), target.is_direct())?;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
    let Sink { mut writer, end } = target.open()?;
    let t0 = Instant::now();
    write_repeated(&mut writer, &buf, bytes)?;
    end.finish(writer)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// A source's own rate: everything it yields read into one `buffer`-byte buffer (a pipe or a
/// socket is fed by another thread). Returns `(bytes, seconds)`.
///
/// A socket is read on a receive low-water mark ([`socket_mark`]): a reader that only reads
/// comes back to a socket sooner than one that also writes what it read somewhere, and
/// without a mark each of its reads returns only what arrived since the last one, so the
/// bare loop would run slower than the raw loop it is the reference of (hw-notes/bench.md,
/// sessions 35 and 36).
pub(super) fn source_rate(source: Source, buffer: usize) -> io::Result<(u64, f64)> {
    let mut buf = io_buf(buffer.max(1), source.is_direct())?;
    let (mut reader, feed) = source.into_parts();
    mark_socket(&reader, buf.len())?;
    let t0 = Instant::now();
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Source::finish(feed)?;
    Ok((total, t0.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_run_and_regions_follow_the_state() {
        for c in [Copy::Out, Copy::In, Copy::Through] {
            let r = copy_rate(c, 4096, 64 << 10, Duration::ZERO).unwrap();
            assert!(r > 0.0);
            assert!(c.describe(4096, 65536).contains("64.0 KiB"));
        }
        assert_eq!(region_for(8 << 20, 1 << 20), 8 << 20);
        assert_eq!(region_for(64 << 30, 1 << 20), 1 << 30);
        assert_eq!(region_for(100, 1 << 20), 1 << 20);
    }

    #[test]
    fn a_socket_source_is_read_on_its_mark_to_the_last_byte() {
        use crate::bench::config::DataPath;
        use crate::migration::engine::sockopt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stream");
        // Not a multiple of the mark: the last read returns at the end of the stream.
        let len = 3 * LOW_WATER_MAX as u64 + 12_345;
        std::fs::write(&f, vec![7u8; len as usize]).unwrap();
        for (buffer, mark) in [(1 << 20, LOW_WATER_MAX), (64 << 10, 64 << 10)] {
            let s = Source::open(DataPath::Tcp, &f, len).unwrap();
            mark_socket(&s.reader, buffer).unwrap();
            let (mut reader, feed) = s.into_parts();
            let SourceReader::Tcp(t) = &reader else {
                panic!("a tcp source reads a socket")
            };
            assert_eq!(
                sockopt(t.as_raw_fd(), libc::SO_RCVLOWAT).unwrap() as usize,
                mark
            );
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            Source::finish(feed).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(all.len() as u64, len);
            let (bytes, _) = source_rate(Source::open(DataPath::Tcp, &f, len).unwrap(), buffer)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(bytes, len, "buffer {buffer}");
        }
        // A pipe has no mark to set.
        let p = Source::open(DataPath::Pipe, &f, len).unwrap();
        mark_socket(&p.reader, 1 << 20).unwrap();
        let (bytes, _) = source_rate(p, 1 << 20).unwrap();
        assert_eq!(bytes, len);
    }
}
