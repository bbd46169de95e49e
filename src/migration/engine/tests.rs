//! Engine tests over an in-test fake device driven through the real v2 driver.

use super::ring::{pipeline, Filled, Producer, Waiter};
use super::*;
use crate::device::fsm;
use crate::device::MigState;
use crate::device::{
    Device, DeviceError, DeviceHandle, DeviceIdentity, DeviceInfo, MigFlags, PrecopyInfo, RegionMap,
};
use crate::migration::compat::Mismatch;
use crate::migration::stream::tests::chunks_untimed;
use crate::migration::stream::{Compression, StreamError};
use crate::migration::v2::V2Driver;
use crate::migration::{MigrationError, Result};
use std::any::Any;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

/// The fake's migration model: the saved stream is `image`. In PRE_COPY the device exposes
/// `avail` bytes of it (half at first); each time a round is drained, the next `dirty` entry
/// becomes available. STOP_COPY exposes everything. RESUMING collects writes; leaving it
/// validates them against `expect` (if set), going to ERROR on mismatch.
#[derive(Default)]
struct Inner {
    state: Option<MigState>,
    image: Vec<u8>,
    pos: usize,
    avail: usize,
    dirty: Vec<usize>,
    fail_read_at: Option<usize>,
    /// STOP_COPY never reaches the end of stream.
    endless: bool,
    received: Vec<u8>,
    /// Every byte ever written, across resets.
    written: Vec<u8>,
    expect: Option<Vec<u8>>,
    loaded: Option<Vec<u8>>,
    resets: u32,
    transitions: u32,
}

struct FakeDevice {
    info: DeviceInfo,
    flags: MigFlags,
    inner: Mutex<Inner>,
}

fn eio(op: &'static str, errno: i32) -> DeviceError {
    DeviceError::Migration {
        device: "fake".into(),
        op,
        state: None,
        source: std::io::Error::from_raw_os_error(errno),
        detail: None,
    }
}

impl FakeDevice {
    fn new(mdev_type: &str, flags: u64, image: Vec<u8>) -> Arc<FakeDevice> {
        Arc::new(FakeDevice {
            info: DeviceInfo {
                name: format!("fake-{mdev_type}"),
                backend: "sim".into(),
                // VFIO_DEVICE_FLAGS_RESET
                flags: 1,
                regions: vec![],
                irqs: vec![],
                identity: DeviceIdentity {
                    device_api: "vfio-pci".into(),
                    mdev_type: Some(mdev_type.into()),
                    ..Default::default()
                },
            },
            flags: MigFlags(flags),
            inner: Mutex::new(Inner {
                image,
                ..Default::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state_now(&self) -> MigState {
        self.lock().state.unwrap_or(MigState::Running)
    }
}

impl Device for FakeDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn read_region(&self, _: u32, _: u64, _: &mut [u8]) -> crate::device::Result<()> {
        Err(eio("region", libc::EINVAL))
    }
    fn write_region(&self, _: u32, _: u64, _: &[u8]) -> crate::device::Result<()> {
        Err(eio("region", libc::EINVAL))
    }
    fn map_region(&self, _: u32, _: u64, _: u64) -> crate::device::Result<RegionMap> {
        Err(eio("mmap", libc::EINVAL))
    }
    fn reset(&self) -> crate::device::Result<()> {
        if self.info.flags & 1 == 0 {
            return Err(DeviceError::Unsupported {
                device: "fake".into(),
                what: "reset".into(),
            });
        }
        let mut i = self.lock();
        i.state = Some(MigState::Running);
        i.received.clear();
        i.resets += 1;
        Ok(())
    }
    fn set_irq_eventfds(&self, _: u32, _: u32, _: &[RawFd]) -> crate::device::Result<()> {
        Ok(())
    }
    fn trigger_irq(&self, _: u32, _: u32) -> crate::device::Result<()> {
        Ok(())
    }
    fn mask_irq(&self, _: u32, _: u32, _: bool) -> crate::device::Result<()> {
        Ok(())
    }
    fn migration_flags(&self) -> crate::device::Result<Option<MigFlags>> {
        Ok(Some(self.flags))
    }
    fn set_mig_state(&self, new: MigState) -> crate::device::Result<()> {
        let mut i = self.lock();
        let cur = i.state.unwrap_or(MigState::Running);
        let path = fsm::path(self.flags, cur, new).map_err(|_| eio("set state", libc::EINVAL))?;
        let mut at = cur;
        for next in path {
            i.transitions += 1;
            match (at, next) {
                (MigState::Running, MigState::PreCopy)
                | (MigState::RunningP2p, MigState::PreCopyP2p) => {
                    i.pos = 0;
                    i.avail = i.image.len() / 2;
                }
                (MigState::Stop, MigState::StopCopy) => {
                    i.pos = 0;
                    i.avail = i.image.len();
                }
                (_, MigState::StopCopy) => i.avail = i.image.len(),
                (MigState::Stop, MigState::Resuming) => i.received.clear(),
                (MigState::Resuming, MigState::Stop) => {
                    if i.expect.as_ref().is_some_and(|e| *e != i.received) {
                        i.state = Some(MigState::Error);
                        return Err(eio("set state", libc::EINVAL));
                    }
                    i.loaded = Some(std::mem::take(&mut i.received));
                }
                _ => {}
            }
            at = next;
            i.state = Some(at);
        }
        Ok(())
    }
    fn mig_state(&self) -> crate::device::Result<MigState> {
        Ok(self.state_now())
    }
    fn mig_read(&self, buf: &mut [u8]) -> crate::device::Result<usize> {
        let mut i = self.lock();
        if !matches!(
            i.state,
            Some(MigState::PreCopy | MigState::PreCopyP2p | MigState::StopCopy)
        ) {
            return Err(eio("read data", libc::EINVAL));
        }
        if let Some(f) = i.fail_read_at {
            if i.pos >= f {
                return Err(eio("read data", libc::EIO));
            }
        }
        if i.endless && i.pos == i.avail && i.state == Some(MigState::StopCopy) {
            i.pos = 0;
        }
        // Small, uneven reads, like a device that hands out pieces.
        let n = buf.len().min(i.avail - i.pos).min(40_000);
        let p = i.pos;
        buf[..n].copy_from_slice(&i.image[p..p + n]);
        i.pos += n;
        Ok(n)
    }
    fn mig_write(&self, buf: &[u8]) -> crate::device::Result<usize> {
        let mut i = self.lock();
        if i.state != Some(MigState::Resuming) {
            return Err(eio("write data", libc::EINVAL));
        }
        let n = buf.len().min(50_000);
        i.received.extend_from_slice(&buf[..n]);
        i.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn precopy_info(&self) -> crate::device::Result<PrecopyInfo> {
        let mut i = self.lock();
        if i.pos == i.avail && !i.dirty.is_empty() {
            let d = i.dirty.remove(0);
            i.avail = (i.avail + d).min(i.image.len());
        }
        Ok(PrecopyInfo {
            initial_bytes: 0,
            dirty_bytes: (i.avail - i.pos) as u64,
        })
    }
    fn stop_copy_size(&self) -> crate::device::Result<u64> {
        Ok(self.lock().image.len() as u64)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn image(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn driver(d: &Arc<FakeDevice>) -> V2Driver {
    let h: DeviceHandle = d.clone();
    V2Driver::new(h, d.flags)
}

fn opts(rounds: u32) -> Options {
    Options {
        buffer_size: 64 * 1024,
        precopy: PrecopyPolicy {
            max_rounds: rounds,
            dirty_threshold: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

const N: usize = 3 * 1024 * 1024 + 123;

fn saved(src_img: &[u8], rounds: u32) -> Vec<u8> {
    let src = FakeDevice::new("fake-1", 7, src_img.to_vec());
    src.lock().dirty = vec![1000, 0];
    let (out, rep) = save(&mut driver(&src), Vec::new(), "mem", &opts(rounds)).unwrap();
    assert_eq!(rep.bytes, src_img.len() as u64);
    assert_eq!(src.state_now(), MigState::Running);
    out
}

#[test]
fn save_restore_round_trip_with_precopy() {
    let img = image(N, 1);
    let src = FakeDevice::new("fake-1", 7, img.clone());
    src.lock().dirty = vec![1000, 10, 0];
    let (out, rep) = save(&mut driver(&src), Vec::new(), "mem", &opts(5)).unwrap();
    assert_eq!(src.state_now(), MigState::Running);
    assert_eq!(rep.bytes, N as u64);
    assert_eq!(rep.precopy_bytes, (N / 2 + 1010) as u64);
    assert_eq!(rep.stopcopy_bytes, rep.bytes - rep.precopy_bytes);
    assert_eq!(rep.rounds, 3);
    assert!(rep.converged);
    assert_eq!(rep.stream_bytes, out.len() as u64);

    let dst = FakeDevice::new("fake-1", 7, vec![]);
    dst.lock().expect = Some(img.clone());
    let r = restore(&mut driver(&dst), &out[..], &opts(0)).unwrap();
    assert_eq!(r.bytes, N as u64);
    assert_eq!(r.source.mdev_type.as_deref(), Some("fake-1"));
    assert_eq!(dst.state_now(), MigState::Running);
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
    assert_eq!(dst.lock().resets, 0);
}

#[test]
fn chunk_buffers_in_huge_pages_save_the_same_stream() {
    let img = image(N, 4);
    for overlap in [true, false] {
        let mut streams = Vec::new();
        for huge_buffers in [false, true] {
            let src = FakeDevice::new("fake-1", 7, img.clone());
            let o = Options {
                overlap,
                huge_buffers,
                ..opts(0)
            };
            let (out, rep) = save(&mut driver(&src), Vec::new(), "mem", &o).unwrap();
            assert_eq!(rep.bytes, N as u64);
            streams.push(out);
        }
        // The headers may differ in their timestamp (whole seconds, so the two saves can
        // straddle a tick), and the trailer's whole-stream checksum with it; the rest of
        // the headers, every chunk and the lengths are the same.
        let [a, b] = [&streams[0], &streams[1]].map(|s| chunks_untimed(s));
        assert_eq!(streams[0].len(), streams[1].len(), "overlap {overlap}");
        assert_eq!(a, b, "overlap {overlap}");
        let dst = FakeDevice::new("fake-1", 7, vec![]);
        restore(&mut driver(&dst), &streams[1][..], &opts(0)).unwrap();
        assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
    }
}

#[test]
fn save_without_precopy_support_skips_it() {
    let img = image(200_000, 2);
    let src = FakeDevice::new("fake-1", MigFlags::STOP_COPY, img);
    let (_, rep) = save(&mut driver(&src), Vec::new(), "mem", &opts(5)).unwrap();
    assert_eq!((rep.rounds, rep.precopy_bytes), (0, 0));
    assert_eq!(rep.stopcopy_bytes, 200_000);
    assert_eq!(src.state_now(), MigState::Running);
}

/// Restores `data` into a fresh fake and returns the error and the device.
fn refused(data: &[u8], mdev_type: &str) -> (MigrationError, Arc<FakeDevice>) {
    let dst = FakeDevice::new(mdev_type, 7, vec![]);
    let e = restore(&mut driver(&dst), data, &opts(0)).unwrap_err();
    assert_eq!(dst.state_now(), MigState::Running, "{e}");
    assert!(dst.lock().loaded.is_none(), "state committed despite {e}");
    (e, dst)
}

#[test]
fn corrupt_chunk_never_reaches_the_device() {
    let img = image(N, 3);
    let mut data = saved(&img, 0);
    // Flip a byte in the middle of the payload.
    let at = data.len() / 2;
    data[at] ^= 0x40;
    let (e, dst) = refused(&data, "fake-1");
    assert!(
        matches!(
            e,
            MigrationError::Stream(StreamError::PayloadChecksum { .. })
        ),
        "{e}"
    );
    let d = dst.lock();
    assert_eq!(d.resets, 1, "RESUMING must be aborted by reset");
    // Only verified data reached the device: what it got is an intact prefix of the image.
    assert!(!d.written.is_empty() && d.written.len() < N);
    assert!(d.written[..] == img[..d.written.len()]);
}

#[test]
fn truncated_stream_is_never_committed() {
    let img = image(N, 4);
    let data = saved(&img, 0);
    for cut in [
        data.len() - 1,
        data.len() - crate::migration::stream::TRAILER_LEN,
        data.len() / 3,
    ] {
        let (e, _) = refused(&data[..cut], "fake-1");
        assert!(
            matches!(e, MigrationError::Stream(StreamError::Truncated { .. })),
            "{e}"
        );
    }
}

#[test]
fn foreign_or_mismatched_stream_touches_nothing() {
    let img = image(10_000, 5);
    let data = saved(&img, 0);
    let (e, dst) = refused(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", "fake-1");
    assert!(e.to_string().contains("bad magic"), "{e}");
    assert_eq!(dst.lock().transitions, 0);
    let (e, dst) = refused(&data, "fake-2");
    assert!(
        matches!(e, MigrationError::Incompatible(ref m) if matches!(m.mismatches[..], [Mismatch::MdevType { .. }])),
        "{e}"
    );
    assert_eq!(dst.lock().transitions, 0);
}

#[test]
fn device_refusing_the_state_is_reset_to_running() {
    let data = saved(&image(100_000, 6), 0);
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    dst.lock().expect = Some(image(100_000, 7));
    let e = restore(&mut driver(&dst), &data[..], &opts(0)).unwrap_err();
    assert!(matches!(e, MigrationError::Device(_)), "{e}");
    assert_eq!(dst.state_now(), MigState::Running);
    assert_eq!(dst.lock().resets, 1);
}

fn dir_entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn pipe_size(f: &std::fs::File) -> usize {
    use std::os::fd::AsFd;
    super::pipe::get_size(f.as_fd()).unwrap()
}

/// `save -o -` into a pipe and `restore -i -` from one: each grows the pipe to a whole buffer
/// (a raw frame), reports the capacity, and the state arrives intact.
#[test]
fn a_pipe_is_grown_to_a_whole_buffer_both_ways() {
    use std::io::{Read, Write};
    let o = Options {
        buffer_size: 1 << 20,
        ..opts(0)
    };
    let img = image(N, 5);
    let src = FakeDevice::new("fake-1", 7, img.clone());
    let (r, w) = super::pipe::new_pipe();
    let before = pipe_size(&w);
    assert!(before < 1 << 20, "a new pipe holds {before} bytes");
    let reader = std::thread::spawn(move || {
        let mut r = r;
        let mut v = Vec::new();
        r.read_to_end(&mut v).map(|_| (v, pipe_size(&r)))
    });
    let token = CancelToken::new().unwrap();
    let out = Output::from_file(w, Path::new("-"));
    let rep = save_to(&mut driver(&src), out, &o, &token).unwrap();
    let (stream, size) = reader.join().unwrap().unwrap();
    assert_eq!(rep.pipe_capacity_bytes, Some(1 << 20));
    assert_eq!(rep.file_commit_seconds, 0.0, "a pipe has nothing to commit");
    assert_eq!(size, 1 << 20);
    assert_eq!(rep.stream_bytes, stream.len() as u64);

    let (r, w) = super::pipe::new_pipe();
    let writer = std::thread::spawn(move || {
        let mut w = w;
        w.write_all(&stream)
    });
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    let input = Input::from_file(r, Path::new("-"));
    let rep = restore_from(&mut driver(&dst), &input, &o, &token).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(rep.pipe_capacity_bytes, Some(1 << 20));
    assert_eq!(pipe_size(input.file()), 1 << 20);
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));

    // A file is no pipe.
    let f = tempfile::NamedTempFile::new().unwrap();
    let src = FakeDevice::new("fake-1", 7, img);
    let out = Output::from_file(f.reopen().unwrap(), f.path());
    assert_eq!(
        save_to(&mut driver(&src), out, &o, &token)
            .unwrap()
            .pipe_capacity_bytes,
        None
    );
}

/// `save -o` into a socket (each thread puts the chunk it read, in turn): the stream is the
/// one `save` writes into memory, byte for byte, and it restores the state.
#[test]
fn a_save_into_a_socket_is_the_stream_save_writes() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let o = opts(0);
    let img = image(N, 6);
    let (mem, _) = save(
        &mut driver(&FakeDevice::new("fake-1", 7, img.clone())),
        Vec::new(),
        "-",
        &o,
    )
    .unwrap();
    let (w, r) = UnixStream::pair().unwrap();
    let reader = std::thread::spawn(move || {
        let mut r = r;
        let mut v = Vec::new();
        r.read_to_end(&mut v).map(|_| v)
    });
    let token = CancelToken::new().unwrap();
    let out = Output::from_file(
        std::fs::File::from(std::os::fd::OwnedFd::from(w)),
        Path::new("-"),
    );
    let rep = save_to(
        &mut driver(&FakeDevice::new("fake-1", 7, img.clone())),
        out,
        &o,
        &token,
    )
    .unwrap();
    let stream = reader.join().unwrap().unwrap();
    assert!(
        rep.chunks > 40,
        "{} chunks: too few for the threads to take turns",
        rep.chunks
    );
    assert_eq!(rep.pipe_capacity_bytes, None, "a socket is no pipe");
    assert!(
        stream == mem,
        "the socket's stream differs from the one saved into memory"
    );
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    restore(&mut driver(&dst), &stream[..], &o).unwrap();
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
}

#[test]
fn file_save_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.vfs");
    let img = image(N, 8);

    // A device failing mid-stream: no file, no temp file, device RUNNING.
    let src = FakeDevice::new("fake-1", 7, img.clone());
    src.lock().fail_read_at = Some(N / 2);
    let e = save_to_file(&mut driver(&src), &path, &opts(0)).unwrap_err();
    assert!(matches!(e, MigrationError::Device(_)), "{e}");
    assert_eq!(src.state_now(), MigState::Running);
    assert!(dir_entries(dir.path()).is_empty());

    // Success: exactly the file, and it restores.
    let src = FakeDevice::new("fake-1", 7, img.clone());
    let rep = save_to_file(&mut driver(&src), &path, &opts(0)).unwrap();
    assert_eq!(dir_entries(dir.path()), ["state.vfs"]);
    assert_eq!(rep.file.as_deref(), Some(path.as_path()));
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    restore_from_file(&mut driver(&dst), &path, &opts(0)).unwrap();
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));

    // A failed save over an existing file leaves the old file intact.
    let before = std::fs::read(&path).unwrap();
    let src = FakeDevice::new("fake-1", 7, image(N, 9));
    src.lock().fail_read_at = Some(1000);
    save_to_file(&mut driver(&src), &path, &opts(0)).unwrap_err();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(dir_entries(dir.path()), ["state.vfs"]);
}

/// A file save with `O_DIRECT` writes a stream as long as through the page cache, which
/// restores the same state, raw (whole frames straight from the engine's buffers) and
/// compressed (every byte staged), and says which way it went: direct where the
/// directory's file system takes it.
#[test]
fn a_file_save_is_direct_where_it_can_be_and_restores_the_same_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let takes_direct = enable_direct(&tempfile::tempfile_in(dir.path()).unwrap()).unwrap();
    let img = image(N, 12);
    for compression in [Compression::None, Compression::Lz4] {
        let mut lens = Vec::new();
        for direct_io in [true, false] {
            let path = dir.path().join(format!("{compression}-{direct_io}"));
            let src = FakeDevice::new("fake-1", 7, img.clone());
            let o = Options {
                compression,
                direct_io,
                ..opts(0)
            };
            let rep = save_to_file(&mut driver(&src), &path, &o).unwrap();
            assert_eq!(rep.direct_io, direct_io && takes_direct, "{compression}");
            assert!(rep.file_commit_seconds > 0.0, "the commit is timed");
            assert_eq!(src.state_now(), MigState::Running);
            let dst = FakeDevice::new("fake-1", 7, vec![]);
            restore_from_file(&mut driver(&dst), &path, &opts(0)).unwrap();
            assert_eq!(
                dst.lock().loaded.as_deref(),
                Some(&img[..]),
                "{compression}"
            );
            let len = std::fs::metadata(&path).unwrap().len();
            assert_eq!(len, rep.stream_bytes, "{compression}");
            lens.push(len);
        }
        assert_eq!(lens[0], lens[1], "{compression}");
    }
}

/// A stream file the page cache does not hold is restored with `O_DIRECT` where its file
/// system takes it, one it holds is read from memory, and with `direct_io` off never
/// direct: the same state every time, and the input's descriptor is left without the flag.
#[test]
fn a_restore_reads_an_uncached_file_direct_and_a_cached_one_through_the_cache() {
    use std::os::fd::{AsFd, AsRawFd};
    let dir = tempfile::tempdir().unwrap();
    let takes_direct = enable_direct(&tempfile::tempfile_in(dir.path()).unwrap()).unwrap();
    let img = image(N, 13);
    let path = dir.path().join("s");
    let src = FakeDevice::new("fake-1", 7, img.clone());
    save_to_file(&mut driver(&src), &path, &opts(0)).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    for (cold, direct_io) in [(true, true), (false, true), (true, false)] {
        let f = std::fs::File::open(&path).unwrap();
        if cold {
            // SAFETY: fadvise on an open descriptor only advises the kernel.
            let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(rc, 0);
        } else {
            std::io::copy(&mut &f, &mut std::io::sink()).unwrap();
        }
        // tmpfs keeps its files in the page cache: nothing there is ever cold.
        let resident = resident_bytes(&f, len).unwrap();
        let cold = resident < len / 2;
        let token = CancelToken::new().unwrap();
        let input = Input::open(&path, &token).unwrap();
        let dst = FakeDevice::new("fake-1", 7, vec![]);
        let o = Options {
            direct_io,
            ..opts(0)
        };
        let rep = restore_from(&mut driver(&dst), &input, &o, &token).unwrap();
        assert_eq!(
            rep.direct_io,
            cold && direct_io && takes_direct,
            "cold {cold}, direct_io {direct_io}, resident {resident} of {len}"
        );
        assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
        assert_eq!(rep.stream_bytes, len);
        let on = super::direct::has_direct(input.file().as_fd()).unwrap();
        assert!(!on, "the flag is put back");
    }
    // A stream that fails half-way (a payload byte flipped) leaves the flag off as well.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, len / 2).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], len / 2).unwrap();
        f.sync_all().unwrap();
        // SAFETY: as above.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
    }
    let token = CancelToken::new().unwrap();
    let input = Input::open(&path, &token).unwrap();
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    restore_from(&mut driver(&dst), &input, &opts(0), &token).unwrap_err();
    let on = super::direct::has_direct(input.file().as_fd()).unwrap();
    assert!(!on, "the flag is put back after a failure");
}

#[test]
fn interrupt_recovers_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let src = FakeDevice::new("fake-1", 7, image(N, 10));
    let cancel: Cancel = Arc::new(AtomicBool::new(false));
    let c2 = cancel.clone();
    let mut o = opts(0);
    o.cancel = Some(cancel);
    o.progress = Some(Arc::new(move |_p: &Progress| {
        c2.store(true, Ordering::Relaxed)
    }));
    let e = save_to_file(&mut driver(&src), &path, &o).unwrap_err();
    assert!(matches!(e, MigrationError::Interrupted), "{e}");
    assert_eq!(src.state_now(), MigState::Running);
    assert!(dir_entries(dir.path()).is_empty());
}

#[test]
fn migrate_with_precopy_converging() {
    let img = image(N, 11);
    let src = FakeDevice::new("fake-1", 7, img.clone());
    src.lock().dirty = vec![5000, 200, 50, 50, 50];
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    dst.lock().expect = Some(img.clone());
    let mut o = opts(10);
    o.precopy.dirty_threshold = 100;
    let r = migrate(&mut driver(&src), &mut driver(&dst), &o).unwrap();
    // Round 1 reads half, leaving 5000 dirty; round 2 reads those, 200 left; round 3 reads
    // 200, 50 left <= 100: converged after 3 rounds.
    assert_eq!(r.rounds, 3);
    assert!(r.converged);
    assert_eq!(r.precopy_bytes, (N / 2 + 5200) as u64);
    assert_eq!(r.bytes, N as u64);
    assert!(r.downtime_seconds > 0.0 && r.downtime_seconds <= r.seconds);
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
    assert_eq!(src.state_now(), MigState::Running);
    assert_eq!(dst.state_now(), MigState::Running);

    // Round limit reached without converging.
    let src = FakeDevice::new("fake-1", 7, img.clone());
    src.lock().dirty = vec![5000, 5000, 5000];
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    let mut o = opts(2);
    o.precopy.dirty_threshold = 100;
    let r = migrate(&mut driver(&src), &mut driver(&dst), &o).unwrap();
    assert_eq!((r.rounds, r.converged), (2, false));
}

#[test]
fn migrate_failure_recovers_both() {
    let src = FakeDevice::new("fake-1", 7, image(N, 12));
    src.lock().fail_read_at = Some(N - 10);
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    let e = migrate(&mut driver(&src), &mut driver(&dst), &opts(2)).unwrap_err();
    assert!(matches!(e, MigrationError::Device(_)), "{e}");
    assert_eq!(src.state_now(), MigState::Running);
    assert_eq!(dst.state_now(), MigState::Running);
    assert!(dst.lock().loaded.is_none());
    // Mismatched identity is refused before either device moves.
    let src = FakeDevice::new("fake-1", 7, image(10, 1));
    let dst = FakeDevice::new("fake-2", 7, vec![]);
    let e = migrate(&mut driver(&src), &mut driver(&dst), &opts(0)).unwrap_err();
    assert!(matches!(e, MigrationError::Incompatible(_)), "{e}");
    assert_eq!(src.lock().transitions + dst.lock().transitions, 0);
}

#[test]
fn aligned_buffers() {
    let b = AlignedBuf::new(10_000).unwrap();
    assert_eq!(b.len(), 10_000);
    assert_eq!(b.as_ptr() as usize % 4096, 0);
    assert!(b.iter().all(|x| *x == 0));
}

#[test]
fn endless_stop_copy_is_cut_off() {
    let src = FakeDevice::new("fake-1", 7, image(1 << 20, 13));
    src.lock().endless = true;
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    let mut o = opts(0);
    o.buffer_size = 4 << 20;
    let e = migrate(&mut driver(&src), &mut driver(&dst), &o).unwrap_err();
    assert!(e.to_string().contains("keeps streaming"), "{e}");
    assert_eq!(src.state_now(), MigState::Running);
    assert_eq!(dst.state_now(), MigState::Running);
}

/// A fake without VFIO_DEVICE_FLAGS_RESET (like mtty).
fn no_reset(mdev_type: &str) -> Arc<FakeDevice> {
    let d = FakeDevice::new(mdev_type, 7, vec![]);
    let mut d = Arc::try_unwrap(d).unwrap_or_else(|_| unreachable!());
    d.info.flags = 0;
    Arc::new(d)
}

#[test]
fn device_without_reset_sees_only_verified_files() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(N, 14);
    let mut data = saved(&img, 0);
    let f = dir.path().join("f");
    data[N / 2] ^= 1;
    std::fs::write(&f, &data).unwrap();
    let dst = no_reset("fake-1");
    let e = restore_from_file(&mut driver(&dst), &f, &opts(0)).unwrap_err();
    assert!(e.to_string().contains("corrupt data"), "{e}");
    assert_eq!(dst.lock().transitions, 0, "the device was touched");
    // A good file restores.
    data[N / 2] ^= 1;
    std::fs::write(&f, &data).unwrap();
    dst.lock().expect = Some(img.clone());
    restore_from_file(&mut driver(&dst), &f, &opts(0)).unwrap();
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
}

#[test]
fn device_left_in_resuming_that_cannot_reset_is_refused_untouched() {
    let dst = no_reset("fake-1");
    dst.lock().state = Some(MigState::Resuming);
    let data = saved(&image(1000, 15), 0);
    let e = restore(&mut driver(&dst), &data[..], &opts(0)).unwrap_err();
    assert!(matches!(e, MigrationError::WrongState { .. }), "{e}");
    assert_eq!(dst.lock().transitions, 0);
    assert_eq!(dst.state_now(), MigState::Resuming);
}

/// `overlap: false` runs every operation on the calling thread with one buffer: the same
/// results, the same integrity checks, the same recovery.
#[test]
fn one_thread_operations_behave_like_two_thread_ones() {
    let img = image(N, 21);
    let one = |rounds| Options {
        overlap: false,
        ..opts(rounds)
    };
    // Save: the same chunks and totals as with two threads.
    let reports: Vec<SaveReport> = [opts(5), one(5)]
        .iter()
        .map(|o| {
            let src = FakeDevice::new("fake-1", 7, img.clone());
            src.lock().dirty = vec![1000, 10, 0];
            let (_, rep) = save(&mut driver(&src), Vec::new(), "mem", o).unwrap();
            assert_eq!(src.state_now(), MigState::Running);
            rep
        })
        .collect();
    let key = |r: &SaveReport| {
        (
            r.bytes,
            r.precopy_bytes,
            r.chunks,
            r.rounds,
            r.converged,
            r.stream_bytes,
        )
    };
    assert_eq!(key(&reports[0]), key(&reports[1]));

    // Restore on one thread: byte-exact, and a corrupt chunk never reaches the device.
    let src = FakeDevice::new("fake-1", 7, img.clone());
    let (mut data, _) = save(&mut driver(&src), Vec::new(), "mem", &one(0)).unwrap();
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    dst.lock().expect = Some(img.clone());
    restore(&mut driver(&dst), &data[..], &one(0)).unwrap();
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
    let at = data.len() / 2;
    data[at] ^= 1;
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    let e = restore(&mut driver(&dst), &data[..], &one(0)).unwrap_err();
    assert!(
        matches!(
            e,
            MigrationError::Stream(StreamError::PayloadChecksum { .. })
        ),
        "{e}"
    );
    let d = dst.lock();
    assert_eq!((d.resets, d.loaded.is_none()), (1, true));
    assert!(!d.written.is_empty() && d.written[..] == img[..d.written.len()]);
    drop(d);

    // Migrate on one thread, and a failing source leaves both devices RUNNING.
    let src = FakeDevice::new("fake-1", 7, img.clone());
    src.lock().dirty = vec![5000, 0];
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    dst.lock().expect = Some(img.clone());
    let r = migrate(&mut driver(&src), &mut driver(&dst), &one(3)).unwrap();
    assert_eq!((r.bytes, r.converged), (N as u64, true));
    assert_eq!(dst.lock().loaded.as_deref(), Some(&img[..]));
    let src = FakeDevice::new("fake-1", 7, img);
    src.lock().fail_read_at = Some(N - 10);
    let dst = FakeDevice::new("fake-1", 7, vec![]);
    let e = migrate(&mut driver(&src), &mut driver(&dst), &one(2)).unwrap_err();
    assert!(matches!(e, MigrationError::Device(_)), "{e}");
    assert_eq!(src.state_now(), MigState::Running);
    assert_eq!(dst.state_now(), MigState::Running);
    assert!(dst.lock().loaded.is_none());
}

/// A 16-byte STOP_COPY chunk in a buffer of the ring.
fn small_chunk(p: &Producer) -> Result<Filled> {
    Ok(Filled {
        buf: p.take()?,
        len: 16,
        check: None,
    })
}

/// On two threads and on one, a failing consumer stops a producer that has
/// far more to send than the ring holds (it must not stay blocked on the full ring), and a
/// failing producer ends the consumer; the failing side's error is the one reported.
#[test]
fn pipeline_failures_stop_the_other_side() {
    let produce_many = |p: &Producer| -> Result<u32> {
        let mut sent = 0;
        for _ in 0..100 * RING {
            p.send(small_chunk(p)?)?;
            sent += 1;
        }
        Ok(sent)
    };
    {
        for overlap in [true, false] {
            let mut seen = 0;
            let e = pipeline(4096, overlap, produce_many, |_| {
                seen += 1;
                if seen == 2 {
                    Err(MigrationError::Stream(StreamError::StreamChecksum))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            assert!(
                matches!(e, MigrationError::Stream(StreamError::StreamChecksum)),
                "overlap {overlap}: {e}"
            );
            assert_eq!(seen, 2);

            let mut seen = 0;
            let e = pipeline(
                4096,
                overlap,
                |p: &Producer| -> Result<u32> {
                    produce_many(p)?;
                    Err(MigrationError::Stream(StreamError::TrailingData))
                },
                |_| {
                    seen += 1;
                    Ok(())
                },
            )
            .unwrap_err();
            assert!(
                matches!(e, MigrationError::Stream(StreamError::TrailingData)),
                "overlap {overlap}: {e}"
            );
            assert_eq!(
                seen,
                100 * RING,
                "every chunk sent before the failure is consumed"
            );

            let mut seen = 0;
            let n = pipeline(4096, overlap, produce_many, |c| {
                assert_eq!(c.data().len(), 16);
                seen += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!((n, seen), (100 * RING as u32, 100 * RING));
        }
    }
}

/// `consumer_far_behind` (where restore verifies chunks) holds only while every buffer but
/// the producer's own is queued for the consumer, and never on one thread.
#[test]
fn consumer_far_behind_needs_the_whole_ring_queued() {
    use std::sync::mpsc;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let seen = pipeline(
        4096,
        true,
        move |p: &Producer| -> Result<Vec<bool>> {
            let mut seen = vec![p.consumer_far_behind()];
            for _ in 0..RING - 1 {
                seen.push(p.consumer_far_behind());
                p.send(small_chunk(p)?)?;
            }
            seen.push(p.consumer_far_behind());
            for _ in 0..RING - 1 {
                go_tx.send(()).expect("the consumer waits");
            }
            Ok(seen)
        },
        move |_| {
            go_rx.recv().expect("the producer lets the consumer go");
            Ok(())
        },
    )
    .unwrap();
    let mut want = vec![false; RING];
    want.push(true);
    assert_eq!(seen, want);

    let far = pipeline(
        4096,
        false,
        |p: &Producer| -> Result<bool> {
            for _ in 0..RING {
                p.send(small_chunk(p)?)?;
            }
            Ok(p.consumer_far_behind())
        },
        |_| Ok(()),
    )
    .unwrap();
    assert!(!far, "one thread: the consumer is never behind");
}

#[test]
fn waiter_backs_off_after_unanswered_polls_and_comes_back() {
    let w = Waiter::default();
    assert!(w.polls(), "a fresh waiter polls");
    // Polls answered in time keep it polling.
    for _ in 0..10 {
        w.record(true, true);
        assert!(w.polls());
    }
    // An unanswered poll (a slow peer) makes the next wait sleep at once, then polls again.
    w.record(true, false);
    assert!(
        !w.polls(),
        "after an unanswered poll the next wait sleeps at once"
    );
    w.record(false, false);
    assert!(
        w.polls(),
        "one sleeping wait after the first unanswered poll"
    );
    // Unanswered polls in a row double the sleeping waits, up to a bound.
    let mut runs = Vec::new();
    for _ in 0..9 {
        w.record(true, false);
        let mut slept = 0;
        while !w.polls() {
            w.record(false, false);
            slept += 1;
        }
        runs.push(slept);
    }
    assert_eq!(runs, [2, 4, 8, 16, 32, 64, 64, 64, 64]);
    // One answered poll (the peer sped up) brings the next unanswered poll back to one.
    w.record(true, true);
    w.record(true, false);
    w.record(false, false);
    assert!(w.polls(), "an answered poll resets the backoff");
    // A ready value is taken without waiting; a closed channel ends the wait.
    let (tx, rx) = std::sync::mpsc::channel();
    tx.send(7).unwrap();
    assert_eq!(w.recv(&rx).unwrap(), 7);
    drop(tx);
    assert!(w.recv(&rx).is_err(), "a closed channel ends the wait");
}

/// A raw chunk and its header fill one buffer, and every raw frame but the last ends on a
/// 4 KiB boundary of the stream (the first chunk is shortened by the stream header's offset
/// into its block); an encoded stream's chunks carry full payloads.
#[test]
fn a_saved_chunk_and_its_header_fill_one_buffer() {
    use crate::migration::stream::{
        Compression, StreamReader, CHUNK_HEADER_LEN, CHUNK_HEADER_LEN_V2,
    };
    let buffer = 64 * 1024;
    for (compression, header) in [
        (Compression::None, CHUNK_HEADER_LEN),
        (Compression::Zero, CHUNK_HEADER_LEN_V2),
    ] {
        let total = 5 * buffer + 777;
        let src = FakeDevice::new("fake-1", MigFlags::STOP_COPY, image(total, 3));
        let o = Options {
            compression,
            ..opts(0)
        };
        let (out, rep) = save(&mut driver(&src), Vec::new(), "mem", &o).unwrap();
        assert_eq!(rep.bytes, total as u64);
        let mut r = StreamReader::new(&out[..]).unwrap();
        let start = r.totals().stream_bytes;
        let mut buf = vec![0u8; buffer];
        let mut lens = Vec::new();
        while let Some((_, n)) = r.next_chunk(&mut buf).unwrap() {
            lens.push(n);
        }
        assert_eq!(lens.iter().sum::<usize>(), total);
        let full = buffer - header;
        if compression == Compression::None {
            assert_ne!(
                start % 4096,
                0,
                "the test needs a stream header off the grid"
            );
            assert_eq!(
                lens[0],
                full - (start % 4096) as usize,
                "the first chunk realigns"
            );
            let mut end = start;
            for (i, n) in lens.iter().enumerate() {
                end += (header + n) as u64;
                if i + 1 < lens.len() {
                    assert_eq!(end % 4096, 0, "frame {i} ends on a block boundary");
                }
                if i > 0 && i + 1 < lens.len() {
                    assert_eq!(*n, full, "frame {i} is one buffer");
                }
            }
        } else {
            let mut want = vec![full; total / full];
            want.push(total % full);
            assert_eq!(lens, want, "{compression:?}");
        }
    }
}

/// A raw frame (header and payload) reaches the sink in one `write` of the whole buffer,
/// even through a sink without `write_vectored` (which would take the header alone).
#[test]
fn a_raw_frame_leaves_in_one_write() {
    struct Writes(Vec<usize>);
    impl std::io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = 64 * 1024;
    let total = 6 * buffer;
    let src = FakeDevice::new("fake-1", MigFlags::STOP_COPY, image(total, 5));
    let (w, rep) = save(&mut driver(&src), Writes(Vec::new()), "mem", &opts(0)).unwrap();
    assert_eq!(rep.bytes, total as u64);
    // The stream header, the first (realigning) frame, full frames, the last frame, the
    // trailer: every write in between is one whole buffer.
    let writes = &w.0;
    assert!(writes.len() >= 5, "{writes:?}");
    assert!(
        writes[2..writes.len() - 2].iter().all(|&n| n == buffer),
        "{writes:?}"
    );
    assert_eq!(
        writes.len(),
        1 + rep.chunks as usize + 1,
        "one write per chunk"
    );
}
