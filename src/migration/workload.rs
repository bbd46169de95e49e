//! Workloads that run on a source device while it is migrated, so pre-copy has something to
//! chase: [`DirtyWriter`] rewrites pages of an mmap-able region (a GPU's VRAM) at a bounded
//! rate, and [`DirtyingDriver`] wraps the source's [`MigrationDriver`] so the writer runs
//! while the source is RUNNING or PRE_COPY and is stopped (joined) before the source is asked
//! to enter any other state (STOP_COPY, STOP, the P2P states) or reset (as recovery may).
//!
//! The writer only mutates device memory through its own mapping, so a second process is not
//! needed (a VFIO device can be open in one process only). Once stopped it stays stopped: after
//! the migration the source's memory is exactly what was sent, and a checksum of the source
//! region must equal the destination's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use crate::device::{find_region, DeviceError, DeviceHandle, MigFlags, MigState, RegionMap};

const PAGE: u64 = 4096;
/// Pages written between rate checks.
const BATCH: u64 = 16;

/// What to dirty and how fast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirtyWriterSpec {
    /// Region index or name (`BAR2`, `2`).
    pub region: String,
    /// Dirtied bytes per second (whole pages; at least one page per second).
    pub rate: u64,
    /// Start of the span rewritten, bytes into the region (page aligned).
    pub offset: u64,
    /// Length of the span (0 = to the end of the region's mmap-able area).
    pub len: u64,
}

impl std::str::FromStr for DirtyWriterSpec {
    type Err = String;

    /// `REGION:RATE[:OFFSET:LEN]`, RATE / OFFSET / LEN with K/M/G suffixes (`BAR2:32M`,
    /// `BAR2:16M:0:256M`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |t: &str, what: &str| -> std::result::Result<u64, String> {
            t.parse::<crate::units::ByteSize>()
                .map(|b| b.bytes())
                .map_err(|e| format!("{what} {t:?} in {s:?}: {e}"))
        };
        let (region, rate, offset, len) = match parts.as_slice() {
            [r, rate] => (*r, num(rate, "rate")?, 0, 0),
            [r, rate, o, l] => (*r, num(rate, "rate")?, num(o, "offset")?, num(l, "length")?),
            _ => return Err(format!("{s:?} is not REGION:RATE[:OFFSET:LEN]")),
        };
        if region.is_empty() {
            return Err(format!("{s:?}: no region"));
        }
        if rate < PAGE {
            return Err(format!(
                "{s:?}: the rate must be at least one page (4K) per second"
            ));
        }
        if offset % PAGE != 0 || len % PAGE != 0 {
            return Err(format!("{s:?}: offset and length must be multiples of 4K"));
        }
        Ok(DirtyWriterSpec {
            region: region.to_string(),
            rate,
            offset,
            len,
        })
    }
}

/// What the writer did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WriterStats {
    /// The region written.
    pub region: u32,
    /// Span start (bytes into the region).
    pub offset: u64,
    /// Span length.
    pub len: u64,
    /// Rate asked for, bytes per second.
    pub rate: u64,
    /// Page writes done (each dirties one 4 KiB page).
    pub pages_written: u64,
    /// `pages_written * 4096`.
    pub bytes_dirtied: u64,
    /// Complete passes over the span.
    pub passes: u64,
    /// How long the writer ran, seconds.
    pub seconds: f64,
    /// Achieved dirtying rate, bytes per second.
    pub achieved_rate: f64,
}

/// A thread rewriting one 8-byte word in each page of a span of a mapped region, page after
/// page, at a bounded rate, until stopped.
#[derive(Debug)]
pub struct DirtyWriter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(WriterStats, Option<DeviceError>)>>,
    stats: WriterStats,
    /// Why the writer ended before it was stopped, until [`DirtyWriter::stop`] reports it.
    failure: Option<MigrationError>,
}

impl DirtyWriter {
    /// Maps the span of `spec.region` on `device` and starts writing.
    pub fn start(device: &DeviceHandle, spec: &DirtyWriterSpec) -> Result<DirtyWriter> {
        let info = device.info();
        let region = find_region(&info.regions, &spec.region).ok_or_else(|| {
            DeviceError::InvalidArgument(format!(
                "{}: no region {:?} to dirty",
                device.name(),
                spec.region
            ))
        })?;
        let area = region
            .mmap_areas()
            .into_iter()
            .find(|a| spec.offset >= a.offset && spec.offset < a.offset + a.size)
            .ok_or_else(|| {
                DeviceError::InvalidArgument(format!(
                    "{}: region {} ({}) has no mmap-able area at {:#x} for the dirty writer",
                    device.name(),
                    region.index,
                    region.name,
                    spec.offset
                ))
            })?;
        let len = if spec.len == 0 {
            area.offset + area.size - spec.offset
        } else {
            spec.len
        };
        if !region.writable() {
            return Err(DeviceError::InvalidArgument(format!(
                "{}: region {} ({}) is not writable (no VFIO_REGION_INFO_FLAG_WRITE): the dirty writer cannot dirty it",
                device.name(),
                region.index,
                region.name
            ))
            .into());
        }
        if len < PAGE || spec.offset + len > area.offset + area.size {
            return Err(DeviceError::InvalidArgument(format!(
                "{}: dirty span {len:#x} at {:#x} does not fit region {}'s mmap-able area {:#x}+{:#x}",
                device.name(),
                spec.offset,
                region.index,
                area.offset,
                area.size
            ))
            .into());
        }
        let map = device.map_region(region.index, spec.offset, len)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = WriterStats {
            region: region.index,
            offset: spec.offset,
            len,
            rate: spec.rate,
            ..WriterStats::default()
        };
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("dirty-writer".into())
            .spawn(move || write_loop(map, st, &flag))
            .map_err(|e| DeviceError::Io {
                device: device.name().into(),
                what: "start the dirty-writer thread".into(),
                source: e,
            })?;
        Ok(DirtyWriter {
            stop,
            handle: Some(handle),
            stats: WriterStats::default(),
            failure: None,
        })
    }

    /// Whether the writer is still running.
    pub fn running(&self) -> bool {
        self.handle.is_some()
    }

    /// Stops the writer (waits until its last write has landed) and returns what it did.
    ///
    /// Fails when the writer ended on its own before: a write into the mapping failed
    /// ([`MigrationError::Device`]) or the thread panicked ([`MigrationError::ThreadPanicked`]).
    /// The failure is reported once, by the first call after it; later calls return the
    /// statistics (what was written until then).
    pub fn stop(&mut self) -> Result<WriterStats> {
        self.halt();
        match self.failure.take() {
            Some(e) => Err(e),
            None => Ok(self.stats.clone()),
        }
    }

    /// Stops and joins the thread, keeping its statistics and any failure for
    /// [`DirtyWriter::stop`].
    fn halt(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Ordering::SeqCst);
            match h.join() {
                Ok((stats, failure)) => {
                    self.stats = stats;
                    self.failure = failure.map(MigrationError::Device);
                }
                Err(_) => self.failure = Some(MigrationError::ThreadPanicked("dirty writer")),
            }
        }
    }
}

impl Drop for DirtyWriter {
    fn drop(&mut self) {
        // A failure not yet reported has nobody left to report it to: whoever dropped the
        // writer without stopping it asked for no statistics either.
        self.halt();
    }
}

/// Writes until `stop` is set or a write fails; returns the statistics and the failure.
fn write_loop(
    map: RegionMap,
    mut st: WriterStats,
    stop: &AtomicBool,
) -> (WriterStats, Option<DeviceError>) {
    let pages = st.len / PAGE;
    let t0 = Instant::now();
    let mut page = 0u64;
    let mut failure = None;
    'run: while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            // A word that changes every pass, at a position that moves with the pass, so
            // every write really changes the page's content.
            let word = (st.passes % (PAGE / 8)) * 8;
            let v = (st.passes + 1) << 32 | page;
            if let Err(e) = map.write((page * PAGE + word) as usize, &v.to_le_bytes()) {
                failure = Some(e);
                break 'run;
            }
            st.pages_written += 1;
            page += 1;
            if page == pages {
                page = 0;
                st.passes += 1;
            }
        }
        // Rate limit: sleep until the bytes written so far are due, in short naps so a stop
        // request is seen quickly.
        let due = Duration::from_secs_f64((st.pages_written * PAGE) as f64 / st.rate as f64);
        loop {
            let el = t0.elapsed();
            if el >= due || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep((due - el).min(Duration::from_millis(5)));
        }
    }
    st.seconds = t0.elapsed().as_secs_f64();
    st.bytes_dirtied = st.pages_written * PAGE;
    st.achieved_rate = if st.seconds > 0.0 {
        st.bytes_dirtied as f64 / st.seconds
    } else {
        0.0
    };
    drop(map);
    (st, failure)
}

/// A source driver with a [`DirtyWriter`] attached: every call is passed through; the
/// writer is stopped before any transition to a state other than RUNNING / PRE_COPY, and
/// before a reset (so it only ever runs while the device does).
pub struct DirtyingDriver<'a> {
    inner: &'a mut dyn MigrationDriver,
    writer: DirtyWriter,
}

impl std::fmt::Debug for DirtyingDriver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirtyingDriver")
            .field("device", &self.inner.device().name())
            .field("writer", &self.writer)
            .finish()
    }
}

impl<'a> DirtyingDriver<'a> {
    /// Starts the writer on `inner`'s device (which should be RUNNING).
    pub fn new(inner: &'a mut dyn MigrationDriver, spec: &DirtyWriterSpec) -> Result<Self> {
        let writer = DirtyWriter::start(inner.device(), spec)?;
        Ok(DirtyingDriver { inner, writer })
    }

    /// Stops the writer (if still running) and returns its statistics, or why it ended
    /// before (see [`DirtyWriter::stop`]).
    pub fn stop_writer(&mut self) -> Result<WriterStats> {
        self.writer.stop()
    }

    /// Whether the writer is still running.
    pub fn writer_running(&self) -> bool {
        self.writer.running()
    }
}

impl MigrationDriver for DirtyingDriver<'_> {
    fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }

    fn device(&self) -> &DeviceHandle {
        self.inner.device()
    }

    fn flags(&self) -> MigFlags {
        self.inner.flags()
    }

    fn set_state(&mut self, state: MigState) -> Result<()> {
        if !matches!(state, MigState::Running | MigState::PreCopy) {
            // A failure of the writer is kept for `stop_writer`: the migration goes on.
            self.writer.halt();
        }
        self.inner.set_state(state)
    }

    fn state(&mut self) -> Result<MigState> {
        self.inner.state()
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.inner.read(buf)
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        self.inner.write(buf)
    }

    fn pending(&mut self) -> Result<Pending> {
        self.inner.pending()
    }

    fn stop_copy_size(&mut self) -> Result<Option<u64>> {
        self.inner.stop_copy_size()
    }

    fn reset(&mut self) -> Result<()> {
        self.writer.halt();
        self.inner.reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let s: DirtyWriterSpec = "BAR2:32M".parse().unwrap();
        assert_eq!(
            (s.region.as_str(), s.rate, s.offset, s.len),
            ("BAR2", 32 << 20, 0, 0)
        );
        let s: DirtyWriterSpec = "2:1M:4K:64K".parse().unwrap();
        assert_eq!((s.rate, s.offset, s.len), (1 << 20, 4096, 65536));
        assert!("BAR2".parse::<DirtyWriterSpec>().is_err());
        assert!("BAR2:100".parse::<DirtyWriterSpec>().is_err()); // under a page per second
        assert!("BAR2:1M:100:4K".parse::<DirtyWriterSpec>().is_err()); // unaligned
        assert!(":1M".parse::<DirtyWriterSpec>().is_err());
    }

    /// A device with one mmap-able 64 KiB region, `BAR2`, whose `write` flag is
    /// `flag_writable` and whose mapping is read-only whatever the flag says (as when the
    /// flag and the mapping disagree).
    struct ReadOnlyBar {
        info: crate::device::DeviceInfo,
    }

    impl ReadOnlyBar {
        fn open(flag_writable: bool) -> DeviceHandle {
            use crate::device::{
                RegionInfo, REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE,
            };
            let mut flags = REGION_FLAG_READ | REGION_FLAG_MMAP;
            if flag_writable {
                flags |= REGION_FLAG_WRITE;
            }
            let bar2 = RegionInfo {
                index: 2,
                name: "BAR2".into(),
                size: 64 << 10,
                offset: 0,
                flags,
                caps: Vec::new(),
            };
            Arc::new(ReadOnlyBar {
                info: crate::device::DeviceInfo {
                    name: "read-only-bar".into(),
                    backend: "test".into(),
                    flags: 0,
                    regions: vec![bar2],
                    irqs: Vec::new(),
                    identity: Default::default(),
                },
            })
        }
    }

    fn unsupported<T>() -> crate::device::Result<T> {
        Err(DeviceError::InvalidArgument("not in this test".into()))
    }

    impl crate::device::Device for ReadOnlyBar {
        fn info(&self) -> &crate::device::DeviceInfo {
            &self.info
        }
        fn read_region(&self, _: u32, _: u64, _: &mut [u8]) -> crate::device::Result<()> {
            unsupported()
        }
        fn write_region(&self, _: u32, _: u64, _: &[u8]) -> crate::device::Result<()> {
            unsupported()
        }
        fn map_region(&self, _: u32, _: u64, len: u64) -> crate::device::Result<RegionMap> {
            let mut mem = vec![0u8; len as usize].into_boxed_slice();
            let ptr = std::ptr::NonNull::new(mem.as_mut_ptr())
                .ok_or_else(|| DeviceError::InvalidArgument("empty mapping".into()))?;
            // SAFETY: `mem` is `len` bytes, kept alive (its heap block does not move) by the
            // map that owns it.
            Ok(unsafe { RegionMap::read_only(ptr, len as usize, Box::new(mem)) })
        }
        fn reset(&self) -> crate::device::Result<()> {
            unsupported()
        }
        fn set_irq_eventfds(
            &self,
            _: u32,
            _: u32,
            _: &[std::os::fd::RawFd],
        ) -> crate::device::Result<()> {
            unsupported()
        }
        fn trigger_irq(&self, _: u32, _: u32) -> crate::device::Result<()> {
            unsupported()
        }
        fn mask_irq(&self, _: u32, _: u32, _: bool) -> crate::device::Result<()> {
            unsupported()
        }
        fn migration_flags(&self) -> crate::device::Result<Option<MigFlags>> {
            Ok(None)
        }
        fn set_mig_state(&self, _: MigState) -> crate::device::Result<()> {
            unsupported()
        }
        fn mig_state(&self) -> crate::device::Result<MigState> {
            unsupported()
        }
        fn mig_read(&self, _: &mut [u8]) -> crate::device::Result<usize> {
            unsupported()
        }
        fn mig_write(&self, _: &[u8]) -> crate::device::Result<usize> {
            unsupported()
        }
        fn precopy_info(&self) -> crate::device::Result<crate::device::PrecopyInfo> {
            unsupported()
        }
        fn stop_copy_size(&self) -> crate::device::Result<u64> {
            unsupported()
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[test]
    fn a_region_without_the_write_flag_is_refused_before_any_thread_starts() {
        let dev = ReadOnlyBar::open(false);
        let spec: DirtyWriterSpec = "BAR2:1M".parse().unwrap();
        let e = DirtyWriter::start(&dev, &spec).unwrap_err();
        assert!(e.to_string().contains("not writable"), "{e}");
    }

    #[test]
    fn a_writer_whose_writes_fail_ends_and_says_why_once() {
        let dev = ReadOnlyBar::open(true);
        let spec: DirtyWriterSpec = "BAR2:1G".parse().unwrap();
        let mut w = DirtyWriter::start(&dev, &spec).unwrap();
        // The writer ends on its own at its first write; wait for that (not for a time)
        // before `stop` asks it to end.
        while !w.handle.as_ref().is_some_and(|h| h.is_finished()) {
            std::thread::yield_now();
        }
        let e = w.stop().unwrap_err();
        assert!(
            matches!(&e, MigrationError::Device(DeviceError::InvalidArgument(m)) if m.contains("read-only")),
            "{e:?}"
        );
        let st = w.stop().expect("the failure is reported once");
        assert_eq!(st.pages_written, 0);
    }
}
