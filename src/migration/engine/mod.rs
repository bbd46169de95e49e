//! The save / restore / live-migrate engine: the data path between a device's migration
//! stream and a file or another device.
//!
//! Design:
//! - **Bounded memory.** A small ring of page-aligned buffers ([`RING`] of them, each one
//!   chunk) is allocated once per operation and reused; nothing is allocated per chunk, so the
//!   footprint is the same for a 4 KiB and a 4 GiB state.
//! - **Overlap.** One thread reads from the source (device, or stream file) into a free
//!   buffer while the calling thread drains a full one into the sink (stream file, or
//!   device). Buffers travel through two bounded channels (full ones forward, empty ones back).
//! - **Integrity.** Saving frames and checksums on the fly ([`super::stream`]). Restoring
//!   verifies each chunk's checksum before its bytes reach the device and leaves RESUMING
//!   (which commits the state) only after the trailer verified.
//! - **Devices are left RUNNING**, on success and on every error path (a device caught in
//!   RESUMING is reset, since vfio.h says a RESUMING session can only be aborted by reset).
//!   If recovery fails too, [`MigrationError::Recovery`] carries both errors.
//! - **Cancellation.** A shared flag ([`Cancel`]) is polled between chunks; the CLI sets it
//!   from its SIGINT handler, so Ctrl-C still returns devices to RUNNING.

use super::stream::{
    ChunkKind, PayloadCheck, StreamHeader, StreamReader, StreamTotals, StreamWriter,
};
use super::{MigrationDriver, MigrationError, Pending, Protocol, Result};
use crate::device::MigState;
use crate::migration::stream::MAX_CHUNK_LEN;
use serde::{Deserialize, Serialize};
use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Buffers in flight per operation.
pub const RING: usize = 4;
/// Default chunk (buffer) size: 1 MiB, what QEMU reads the data fd with.
pub const DEFAULT_BUFFER: usize = 1 << 20;
const PAGE: usize = 4096;

/// A cancellation flag shared with a signal handler or another thread.
pub type Cancel = Arc<AtomicBool>;

/// Progress callback: called on the calling thread after every chunk.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Which phase a transfer is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading while the source still runs (PRE_COPY).
    Precopy,
    /// Reading the stopped source (STOP_COPY).
    StopCopy,
    /// Feeding a stream into the target (RESUMING).
    Resume,
}

impl From<ChunkKind> for Phase {
    /// The phase of the source that produced a chunk.
    fn from(kind: ChunkKind) -> Phase {
        match kind {
            ChunkKind::Precopy => Phase::Precopy,
            ChunkKind::Stopcopy => Phase::StopCopy,
        }
    }
}

/// What the progress callback receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Device-state bytes moved so far.
    pub bytes: u64,
    /// Expected total, when known (device estimate, stream header).
    pub expected: Option<u64>,
}

/// When to stop pre-copying and stop the source. The default runs no pre-copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecopyPolicy {
    /// Maximum pre-copy rounds; 0 disables pre-copy.
    pub max_rounds: u32,
    /// Converged when the bytes still pending after a round (initial + dirty) are at or below
    /// this.
    pub dirty_threshold: u64,
}

/// Options common to every operation.
#[derive(Clone)]
pub struct Options {
    /// Chunk / buffer size in bytes (rounded up to a page, at most 64 MiB).
    pub buffer_size: usize,
    /// Pre-copy policy (save and migrate; ignored when the source lacks PRE_COPY).
    pub precopy: PrecopyPolicy,
    /// Checked between chunks; when set the operation stops with
    /// [`MigrationError::Interrupted`] and devices are recovered.
    pub cancel: Option<Cancel>,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
    /// Check the destination's identity (device_api, mdev type, PCI IDs, protocol) against
    /// the source's before migrating (`restore` always checks the stream header).
    pub check_identity: bool,
    /// Run the device side and the stream side of an operation on two threads, so reading
    /// overlaps writing (the default). Off, each operation runs on the calling thread alone,
    /// with one buffer: for moving many devices at once on few cores, where a second thread
    /// per device only competes with the other devices for the same cores (and costs more
    /// CPU per byte: the data crosses from one core's cache to another's).
    pub overlap: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            buffer_size: DEFAULT_BUFFER,
            precopy: PrecopyPolicy::default(),
            cancel: None,
            progress: None,
            check_identity: true,
            overlap: true,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("buffer_size", &self.buffer_size)
            .field("precopy", &self.precopy)
            .field("cancel", &self.cancel.is_some())
            .field("progress", &self.progress.is_some())
            .field("check_identity", &self.check_identity)
            .field("overlap", &self.overlap)
            .finish()
    }
}

impl Options {
    fn chunk_len(&self) -> Result<usize> {
        if self.buffer_size == 0 || self.buffer_size > MAX_CHUNK_LEN as usize {
            return Err(MigrationError::Stream(format!(
                "buffer size {} is outside 1..={} bytes",
                self.buffer_size, MAX_CHUNK_LEN
            )));
        }
        Ok(self.buffer_size)
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancelled() {
            Err(MigrationError::Interrupted)
        } else {
            Ok(())
        }
    }

    fn report(&self, phase: Phase, bytes: u64, expected: Option<u64>) {
        if let Some(p) = &self.progress {
            p(&Progress {
                phase,
                bytes,
                expected,
            });
        }
    }
}

/// One pre-copy round: what was pending when it started, what it read, what was pending after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundStats {
    /// Round number, from 1.
    pub round: u32,
    /// Pending when the round started (initial + dirty).
    pub pending_before: Pending,
    /// Bytes read in the round.
    pub bytes: u64,
    /// Pending when the round ended: what the source dirtied (or had left) meanwhile.
    pub pending_after: Pending,
    /// Round duration, seconds.
    pub seconds: f64,
}

/// Result of [`save`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaveReport {
    /// Source device.
    pub device: String,
    /// Output file, when saving to a file.
    pub file: Option<PathBuf>,
    /// Migration protocol.
    pub protocol: Protocol,
    /// Device-state bytes saved.
    pub bytes: u64,
    /// Of which read during pre-copy.
    pub precopy_bytes: u64,
    /// Of which read during STOP_COPY.
    pub stopcopy_bytes: u64,
    /// Stream bytes written (framing included).
    pub stream_bytes: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Pre-copy rounds run.
    pub rounds: u32,
    /// Per pre-copy round: pending before and after, bytes read, duration.
    #[serde(default)]
    pub precopy_rounds: Vec<RoundStats>,
    /// Whether pre-copy converged under the threshold (false when it ran out of rounds or
    /// did not run).
    pub converged: bool,
    /// The device's STOP_COPY size estimate, when it gave one.
    pub state_size_estimate: Option<u64>,
    /// Whole operation, seconds.
    pub seconds: f64,
    /// Time the device spent stopped (from leaving RUNNING/PRE_COPY until STOP_COPY's end
    /// of stream), seconds.
    pub stop_copy_seconds: f64,
    /// `bytes / seconds`.
    pub throughput_bytes_per_s: f64,
    /// The whole-stream checksum (XXH3-64) written in the trailer.
    pub stream_checksum: u64,
}

/// Result of [`restore`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Target device.
    pub device: String,
    /// Input file, when restoring from a file.
    pub file: Option<PathBuf>,
    /// Migration protocol.
    pub protocol: Protocol,
    /// The stream's header (who saved it).
    pub source: StreamHeader,
    /// Device-state bytes restored.
    pub bytes: u64,
    /// Stream bytes read.
    pub stream_bytes: u64,
    /// Chunks read.
    pub chunks: u64,
    /// Whole operation, seconds.
    pub seconds: f64,
    /// Time leaving RESUMING took (the device validating and loading the state), seconds.
    pub commit_seconds: f64,
    /// `bytes / seconds`.
    pub throughput_bytes_per_s: f64,
}

/// Result of [`migrate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrateReport {
    /// Source device.
    pub source: String,
    /// Destination device.
    pub destination: String,
    /// Migration protocol.
    pub protocol: Protocol,
    /// Device-state bytes moved.
    pub bytes: u64,
    /// Of which moved during pre-copy.
    pub precopy_bytes: u64,
    /// Of which moved during STOP_COPY.
    pub stopcopy_bytes: u64,
    /// Chunks moved.
    pub chunks: u64,
    /// Pre-copy rounds run.
    pub rounds: u32,
    /// Per pre-copy round: pending before and after, bytes read, duration.
    #[serde(default)]
    pub precopy_rounds: Vec<RoundStats>,
    /// Whether pre-copy converged under the threshold.
    pub converged: bool,
    /// Whole operation, seconds.
    pub seconds: f64,
    /// Pre-copy phase, seconds.
    pub precopy_seconds: f64,
    /// From the source leaving RUNNING to the end of its STOP_COPY stream, seconds.
    pub stop_copy_seconds: f64,
    /// The destination leaving RESUMING (validating and loading), seconds.
    pub commit_seconds: f64,
    /// From the source leaving RUNNING until the destination is RUNNING, seconds.
    pub downtime_seconds: f64,
    /// `bytes / seconds`.
    pub throughput_bytes_per_s: f64,
}

// ---------------------------------------------------------------------------------------------
// Buffers

/// A page-aligned buffer of anonymous memory (`mmap`), zero-filled by the kernel and faulted
/// in on first touch: creating one costs a system call, not a pass over its bytes, so a tiny
/// state (mtty's ~100 bytes) does not pay for the full ring, and a large one pays each page
/// once.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf uniquely owns its mapping (like a Box<[u8]>); moving it to another
// thread moves that ownership.
unsafe impl Send for AlignedBuf {}

/// Mappings kept for the next operation of this process, as (address, capacity), bounded by
/// [`POOL_BYTES`]: a VMM or a benchmark running many transfers maps and faults its buffers
/// once, not per transfer.
static POOL: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
/// Most memory the buffer pool keeps.
const POOL_BYTES: usize = 32 << 20;

impl AlignedBuf {
    /// A page-aligned buffer of `len` bytes (at least one page): a pooled mapping of the same
    /// capacity when there is one (its contents are stale: callers overwrite before they
    /// read), a fresh one otherwise.
    ///
    /// # Panics
    /// When the kernel cannot provide the mapping (out of memory), like a failed allocation.
    pub fn new(len: usize) -> AlignedBuf {
        let cap = Self::capacity(len);
        if let Ok(mut pool) = POOL.lock() {
            if let Some(i) = pool.iter().position(|&(_, c)| c == cap) {
                let (addr, _) = pool.swap_remove(i);
                if let Some(ptr) = NonNull::new(addr as *mut u8) {
                    return AlignedBuf { ptr, len };
                }
            }
        }
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let ptr = if p == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(p as *mut u8)
        };
        let Some(ptr) = ptr else {
            match Layout::from_size_align(cap, PAGE) {
                Ok(l) => std::alloc::handle_alloc_error(l),
                Err(_) => std::alloc::handle_alloc_error(Layout::new::<u8>()),
            }
        };
        AlignedBuf { ptr, len }
    }

    fn capacity(len: usize) -> usize {
        len.max(1).div_ceil(PAGE) * PAGE
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes of the mapping owned by self (anonymous memory
        // reads as zeros until written).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in Deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let cap = Self::capacity(self.len);
        if let Ok(mut pool) = POOL.lock() {
            let held: usize = pool.iter().map(|&(_, c)| c).sum();
            if held + cap <= POOL_BYTES {
                // The mapping changes hands: nothing refers to it once self is gone.
                pool.push((self.ptr.as_ptr() as usize, cap));
                return;
            }
        }
        // SAFETY: the mapping was created in `new` with this size and is not used after drop.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, cap) };
    }
}

/// A full buffer travelling from the producer to the consumer.
struct Filled {
    kind: ChunkKind,
    buf: AlignedBuf,
    len: usize,
    /// For a chunk read from a stream: its payload check, done by the consumer.
    check: Option<PayloadCheck>,
}

/// The consuming side of a pipeline: called with each chunk, its kind and its pending
/// payload check.
type Consume<'a> = dyn FnMut(ChunkKind, &[u8], Option<&PayloadCheck>) -> Result<()> + 'a;

/// The producer's side of the ring.
/// Buffers are made as needed, up to [`RING`]: a state that fits one buffer never maps the
/// others.
struct Producer<'a> {
    chunk: usize,
    to: Handoff<'a>,
}

/// Where the producer's chunks go.
enum Handoff<'a> {
    /// To the consumer's thread, through the ring.
    Ring {
        free: Receiver<AlignedBuf>,
        full: SyncSender<Filled>,
        /// Buffers made so far (at most [`RING`]).
        made: Cell<usize>,
    },
    /// Straight into the consumer, on this thread; one buffer, reused.
    Inline {
        spare: RefCell<Option<AlignedBuf>>,
        consume: RefCell<&'a mut Consume<'a>>,
    },
}

impl Producer<'_> {
    /// A free buffer, or an error when the consumer has stopped (its error is reported).
    fn take(&self) -> Result<AlignedBuf> {
        match &self.to {
            Handoff::Ring { free, made, .. } => {
                if let Ok(b) = free.try_recv() {
                    return Ok(b);
                }
                if made.get() < RING {
                    made.set(made.get() + 1);
                    return Ok(AlignedBuf::new(self.chunk));
                }
                free.recv().map_err(|_| consumer_gone())
            }
            Handoff::Inline { spare, .. } => Ok(spare
                .borrow_mut()
                .take()
                .unwrap_or_else(|| AlignedBuf::new(self.chunk))),
        }
    }

    fn send(&self, f: Filled) -> Result<()> {
        match &self.to {
            Handoff::Ring { full, .. } => full.send(f).map_err(|_| consumer_gone()),
            Handoff::Inline { spare, consume } => {
                (consume.borrow_mut())(f.kind, &f.buf[..f.len], f.check.as_ref())?;
                *spare.borrow_mut() = Some(f.buf);
                Ok(())
            }
        }
    }
}

fn consumer_gone() -> MigrationError {
    MigrationError::Stream("the writing side stopped".into())
}

/// Which side of a [`pipeline`] runs on the calling thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// The caller produces (reads the device: save, migrate); a second thread consumes.
    Produces,
    /// The caller consumes (writes the device: restore); a second thread produces.
    Consumes,
}

/// Runs `produce` and `consume` on two threads, passing [`RING`] buffers of `chunk` bytes
/// between them. The device side runs on the calling thread (`caller`): the thread that
/// opened the device and that the embedding program placed and configured keeps making the
/// device calls, and the stream side runs on a helper. (Under the bed's emulated CPUs, device
/// reads from a fresh helper thread were measured ~10 % slower than from the caller,
/// hw-notes/bench.md.) The first error wins: a side that only failed because the other went
/// away reports the other's error.
///
/// Without `overlap`, both run on this thread: each chunk is consumed as soon as it is
/// produced, in one reused buffer.
fn pipeline<P, C, T>(
    chunk: usize,
    overlap: bool,
    caller: Caller,
    produce: P,
    mut consume: C,
) -> Result<T>
where
    P: FnOnce(&Producer) -> Result<T> + Send,
    T: Send,
    C: FnMut(ChunkKind, &[u8], Option<&PayloadCheck>) -> Result<()> + Send,
{
    if !overlap {
        let p = Producer {
            chunk,
            to: Handoff::Inline {
                spare: RefCell::new(None),
                consume: RefCell::new(&mut consume),
            },
        };
        return produce(&p);
    }
    let (free_tx, free_rx) = mpsc::sync_channel::<AlignedBuf>(RING);
    let (full_tx, full_rx) = mpsc::sync_channel::<Filled>(RING);
    let producer = move || {
        let p = Producer {
            chunk,
            to: Handoff::Ring {
                free: free_rx,
                full: full_tx,
                made: Cell::new(0),
            },
        };
        // Returning drops the ring's sending end, which ends the consumer's loop.
        produce(&p)
    };
    // Calling this consumes it: its ends of the ring close as soon as it returns, which is
    // what stops a producer blocked on a full ring after the consumer failed.
    let consumer = move || -> Result<()> {
        let (full_rx, free_tx, mut consume) = (full_rx, free_tx, consume);
        for f in full_rx.iter() {
            // On error, returning drops both of the consumer's channel ends, which stops the
            // producer.
            consume(f.kind, &f.buf[..f.len], f.check.as_ref())?;
            // The producer may already be done; a closed return path is fine.
            let _ = free_tx.send(f.buf);
        }
        Ok(())
    };
    let (produced, consumed) = std::thread::scope(|s| match caller {
        Caller::Produces => {
            let h = s.spawn(consumer);
            let produced = producer();
            let consumed = h.join().unwrap_or_else(|_| {
                Err(MigrationError::Stream("the writing thread panicked".into()))
            });
            (produced, consumed)
        }
        Caller::Consumes => {
            let h = s.spawn(producer);
            let consumed = consumer();
            let produced = h.join().unwrap_or_else(|_| {
                Err(MigrationError::Stream("the reading thread panicked".into()))
            });
            (produced, consumed)
        }
    });
    match (produced, consumed) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        // The producer failing because the consumer stopped is a consequence, not the cause.
        (Err(pe), Err(ce)) => {
            if matches!(&pe, MigrationError::Stream(m) if m == "the writing side stopped") {
                Err(ce)
            } else {
                Err(pe)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a device

/// What the device-reading side did.
#[derive(Clone, Debug, Default)]
struct SourceStats {
    precopy_bytes: u64,
    round_stats: Vec<RoundStats>,
    stopcopy_bytes: u64,
    chunks: u64,
    rounds: u32,
    converged: bool,
    precopy_seconds: f64,
    /// When the source was asked to leave RUNNING for STOP_COPY.
    stopped_at: Option<Instant>,
    /// When STOP_COPY reached end of stream.
    eof_at: Option<Instant>,
}

/// Reads from the device into `buf` until it is full or the device returns 0, reading no
/// more than `limit` bytes.
fn fill(
    drv: &mut dyn MigrationDriver,
    buf: &mut [u8],
    limit: usize,
    opts: &Options,
) -> Result<usize> {
    let want = buf.len().min(limit);
    let mut got = 0;
    while got < want {
        opts.check_cancel()?;
        let n = drv.read(&mut buf[got..want])?;
        if n == 0 {
            break;
        }
        if n > want - got {
            return Err(MigrationError::Protocol {
                device: drv.device().name().to_string(),
                what: format!("read returned {n} bytes for a {}-byte buffer", want - got),
            });
        }
        got += n;
    }
    Ok(got)
}

/// The source side of save and migrate: optional pre-copy rounds, then STOP_COPY to end of
/// stream, every chunk sent through `p`.
fn read_source(
    drv: &mut dyn MigrationDriver,
    opts: &Options,
    estimate: Option<u64>,
    p: &Producer,
) -> Result<SourceStats> {
    let mut st = SourceStats::default();
    let limit = stream_limit(estimate);
    let policy = opts.precopy;
    let flags = drv.flags();
    if policy.max_rounds > 0 && flags.has(crate::device::MigFlags::PRE_COPY) {
        let t0 = Instant::now();
        drv.set_state(MigState::PreCopy)?;
        loop {
            opts.check_cancel()?;
            let tr = Instant::now();
            let before = drv.pending()?;
            let read_before = st.precopy_bytes;
            let pending = before.total();
            // Read what was pending at the start of the round (at least one chunk, so a device
            // that under-reports still makes progress), until the device has nothing now.
            let mut budget = pending.max(1);
            while budget > 0 {
                let mut buf = p.take()?;
                let n = fill(drv, &mut buf, budget.min(usize::MAX as u64) as usize, opts)?;
                if n == 0 {
                    break;
                }
                budget = budget.saturating_sub(n as u64);
                st.precopy_bytes += n as u64;
                st.chunks += 1;
                p.send(Filled {
                    kind: ChunkKind::Precopy,
                    buf,
                    len: n,
                    check: None,
                })?;
            }
            st.rounds += 1;
            let after = drv.pending()?;
            st.round_stats.push(RoundStats {
                round: st.rounds,
                pending_before: before,
                bytes: st.precopy_bytes - read_before,
                pending_after: after,
                seconds: secs(tr),
            });
            let left = after.total();
            if left <= policy.dirty_threshold {
                st.converged = true;
                break;
            }
            if st.rounds >= policy.max_rounds {
                break;
            }
        }
        st.precopy_seconds = t0.elapsed().as_secs_f64();
    }
    opts.check_cancel()?;
    st.stopped_at = Some(Instant::now());
    drv.set_state(MigState::StopCopy)?;
    loop {
        let mut buf = p.take()?;
        let n = fill(drv, &mut buf, usize::MAX, opts)?;
        if n == 0 {
            break;
        }
        st.stopcopy_bytes += n as u64;
        st.chunks += 1;
        if let Some(l) = limit {
            if st.precopy_bytes + st.stopcopy_bytes > l {
                return Err(MigrationError::Protocol {
                    device: drv.device().name().to_string(),
                    what: format!(
                        "STOP_COPY keeps streaming: {} bytes read, the device estimated {} (the end of stream never came)",
                        st.precopy_bytes + st.stopcopy_bytes,
                        estimate.unwrap_or(0)
                    ),
                });
            }
        }
        p.send(Filled {
            kind: ChunkKind::Stopcopy,
            buf,
            len: n,
            check: None,
        })?;
    }
    st.eof_at = Some(Instant::now());
    Ok(st)
}

/// The most a device may stream when it estimated `estimate` bytes: four times the estimate,
/// and at least 64 MiB more than it (devices may exceed their estimates, but a stream that
/// never ends must not run forever). No limit without an estimate.
fn stream_limit(estimate: Option<u64>) -> Option<u64> {
    estimate.map(|e| e.saturating_mul(4).max(e.saturating_add(64 << 20)))
}

/// Writes all of `data` into a device in RESUMING.
fn write_device(drv: &mut dyn MigrationDriver, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        let n = drv.write(data)?;
        if n == 0 || n > data.len() {
            return Err(MigrationError::Protocol {
                device: drv.device().name().to_string(),
                what: format!("write accepted {n} of {} bytes", data.len()),
            });
        }
        data = &data[n..];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Recovery

/// Returns a device to RUNNING after `err`: a reset when it sits in RESUMING (the only way
/// to abort a resume), otherwise the driver's recovery. Returns `err`, or
/// [`MigrationError::Recovery`] when recovery failed too.
pub fn recover_after(drv: &mut dyn MigrationDriver, err: MigrationError) -> MigrationError {
    match recover_device(drv) {
        Ok(()) => err,
        Err(re) => MigrationError::Recovery {
            error: Box::new(err),
            recovery: Box::new(re),
        },
    }
}

/// `VFIO_DEVICE_FLAGS_RESET`.
const DEVICE_FLAGS_RESET: u32 = crate::device::uapi::DEVICE_FLAGS_RESET;

/// Whether the device advertises `VFIO_DEVICE_RESET` support.
pub fn can_reset(drv: &dyn MigrationDriver) -> bool {
    drv.device().info().flags & DEVICE_FLAGS_RESET != 0
}

/// Returns a device to RUNNING whatever state it is in (see [`recover_after`]).
///
/// A device in RESUMING is reset, the only way vfio.h allows to abort a resume. When the reset
/// is refused and the device does not advertise `VFIO_DEVICE_FLAGS_RESET` (mtty, for one), the
/// only way out of RESUMING is the driver's validation (RESUMING -> STOP): the driver's
/// recovery attempts it, so the device ends up RUNNING with the state it validated, or in its
/// error handling. [`restore_from_file`] verifies the whole file before entering RESUMING on
/// such devices, so this happens only on I/O errors or with non-file sources.
pub fn recover_device(drv: &mut dyn MigrationDriver) -> Result<()> {
    if matches!(drv.state(), Ok(MigState::Resuming)) {
        if let Err(e) = drv.device().reset() {
            if can_reset(drv) {
                return Err(e.into());
            }
        }
    }
    drv.recover()
}

/// Brings a device found outside RUNNING at the start of an operation back to RUNNING.
///
/// A device found in RESUMING was left there by an earlier session (its data fd is gone). It
/// is reset; when the reset is refused it is left untouched and refused, because the other
/// way out, RESUMING -> STOP, asks the driver to load data that no longer exists: on Linux
/// 6.12 mtty dereferences a NULL migration file there and oopses.
fn start_from_running(drv: &mut dyn MigrationDriver) -> Result<()> {
    let s = drv.state()?;
    if s == MigState::Running {
        return Ok(());
    }
    if s == MigState::Resuming {
        if let Err(e) = drv.device().reset() {
            return Err(MigrationError::WrongState {
                device: drv.device().name().to_string(),
                op: format!("start (the device was left in RESUMING by an earlier session and the reset failed: {e}; leaving RESUMING without its data fd can crash the driver: remove and recreate the device)"),
                expected: "RUNNING".into(),
                actual: s,
            });
        }
    }
    drv.recover()
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

fn rate(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------------
// Save

/// Saves the device's state into `sink` as a stream (see [`super::stream`]): optional
/// pre-copy rounds (when the device has PRE_COPY), then STOP_COPY to end of stream. The
/// device is RUNNING again afterwards, on success and on error. `name` labels I/O errors.
pub fn save<W: Write + Send>(
    drv: &mut dyn MigrationDriver,
    sink: W,
    name: &str,
    opts: &Options,
) -> Result<(W, SaveReport)> {
    let chunk = opts.chunk_len()?;
    match save_inner(drv, sink, name, opts, chunk) {
        Ok(v) => Ok(v),
        Err(e) => Err(recover_after(drv, e)),
    }
}

fn save_inner<W: Write + Send>(
    drv: &mut dyn MigrationDriver,
    sink: W,
    name: &str,
    opts: &Options,
    chunk: usize,
) -> Result<(W, SaveReport)> {
    let t0 = Instant::now();
    opts.check_cancel()?;
    let estimate = drv.stop_copy_size().ok().flatten();
    let header = StreamHeader::for_device(
        drv.device(),
        drv.protocol(),
        drv.flags(),
        estimate,
        chunk as u32,
    );
    let device = drv.device().name().to_string();
    let protocol = drv.protocol();
    let mut writer = StreamWriter::new(sink, name, &header)?;
    let mut done = 0u64;
    let stats = pipeline(
        chunk,
        opts.overlap,
        Caller::Produces,
        |p| read_source(drv, opts, estimate, p),
        |kind, data, _| {
            opts.check_cancel()?;
            writer.write_chunk(kind, data)?;
            done += data.len() as u64;
            opts.report(kind.into(), done, estimate);
            Ok(())
        },
    )?;
    let (sink, totals) = writer.finish()?;
    drv.set_state(MigState::Running)?;
    let seconds = secs(t0);
    let stop_copy_seconds = match (stats.stopped_at, stats.eof_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let bytes = totals.payload_bytes;
    Ok((
        sink,
        SaveReport {
            device,
            file: None,
            protocol,
            bytes,
            precopy_bytes: stats.precopy_bytes,
            stopcopy_bytes: stats.stopcopy_bytes,
            stream_bytes: totals.stream_bytes,
            chunks: totals.chunks,
            rounds: stats.rounds,
            precopy_rounds: stats.round_stats.clone(),
            converged: stats.converged,
            state_size_estimate: estimate,
            seconds,
            stop_copy_seconds,
            throughput_bytes_per_s: rate(bytes, seconds),
            stream_checksum: totals.checksum,
        },
    ))
}

/// Removes a temporary file when dropped, unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// [`save`] into `path`, atomically: the stream goes to a temporary file in the same
/// directory, which is fsync'd and renamed over `path` only when complete. A failed or
/// interrupted save leaves no temporary file and does not touch an existing `path`.
pub fn save_to_file(
    drv: &mut dyn MigrationDriver,
    path: &Path,
    opts: &Options,
) -> Result<SaveReport> {
    let file_err = |p: &Path, source| MigrationError::File {
        path: p.display().to_string(),
        source,
    };
    let fname = path.file_name().ok_or_else(|| {
        file_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        fname.to_string_lossy(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    // Named after the output, not the temporary file: that is what the user asked for.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| MigrationError::File {
            path: format!(
                "{} (cannot create a temporary file in {})",
                path.display(),
                dir.display()
            ),
            source: e,
        })?;
    let mut guard = TempGuard(Some(tmp.clone()));
    let (file, mut report) = save(drv, file, &path.display().to_string(), opts)?;
    // The device is RUNNING again; what is left cannot affect it.
    file.sync_all().map_err(|e| file_err(&tmp, e))?;
    drop(file);
    if opts.cancelled() {
        return Err(MigrationError::Interrupted);
    }
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))?;
    guard.0 = None;
    if let Ok(d) = File::open(&dir) {
        // Make the rename durable; a failure here does not invalidate the file.
        let _ = d.sync_all();
    }
    report.file = Some(path.to_path_buf());
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Restore

/// Restores a stream into the device: the header is checked against the device (before it
/// is touched), the device enters RESUMING, each chunk is verified before it is written, and
/// RESUMING is left (committing the state) only after the trailer verified. On any error the
/// device is reset back to RUNNING and the error says what was wrong.
pub fn restore<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    source: R,
    opts: &Options,
) -> Result<RestoreReport> {
    let t0 = Instant::now();
    opts.check_cancel()?;
    // Nothing below touches the device until the header is validated and matches it.
    let reader = StreamReader::new(source)?;
    reader.header().check_target(drv.device(), drv.protocol())?;
    start_from_running(drv)?;
    match restore_inner(drv, reader, opts, t0) {
        Ok(r) => Ok(r),
        Err(e) => Err(recover_after(drv, e)),
    }
}

fn restore_inner<R: Read + Send>(
    drv: &mut dyn MigrationDriver,
    mut reader: StreamReader<R>,
    opts: &Options,
    t0: Instant,
) -> Result<RestoreReport> {
    let header = reader.header().clone();
    let chunk = header.max_chunk as usize;
    let expected = header.state_size_estimate;
    drv.set_state(MigState::Resuming)?;
    let mut done = 0u64;
    // Every payload is verified before it reaches the device, on whichever thread has time:
    // when the writing side is waiting for data (nothing queued), the reader is the
    // bottleneck and leaves the checksum to the writer; otherwise the reader checks it while
    // the writer is busy. The whole-stream checksum is verified by the reader at the trailer,
    // before RESUMING is left.
    let queued = AtomicUsize::new(0);
    let totals: StreamTotals = pipeline(
        chunk,
        opts.overlap,
        Caller::Consumes,
        |p| {
            loop {
                opts.check_cancel()?;
                let mut buf = p.take()?;
                match reader.next_chunk_unverified(&mut buf)? {
                    Some((kind, len, check)) => {
                        let check = if queued.load(Ordering::Acquire) == 0 {
                            Some(check)
                        } else {
                            check.verify(&buf[..len])?;
                            None
                        };
                        queued.fetch_add(1, Ordering::AcqRel);
                        p.send(Filled {
                            kind,
                            buf,
                            len,
                            check,
                        })?
                    }
                    None => break,
                }
            }
            Ok(reader.totals())
        },
        |_, data, check| {
            queued.fetch_sub(1, Ordering::AcqRel);
            opts.check_cancel()?;
            if let Some(check) = check {
                check.verify(data)?;
            }
            write_device(drv, data)?;
            done += data.len() as u64;
            opts.report(Phase::Resume, done, expected);
            Ok(())
        },
    )?;
    opts.check_cancel()?;
    let tc = Instant::now();
    drv.set_state(MigState::Running)?;
    let commit_seconds = secs(tc);
    let seconds = secs(t0);
    Ok(RestoreReport {
        device: drv.device().name().to_string(),
        file: None,
        protocol: drv.protocol(),
        source: header,
        bytes: totals.payload_bytes,
        stream_bytes: totals.stream_bytes,
        chunks: totals.chunks,
        seconds,
        commit_seconds,
        throughput_bytes_per_s: rate(totals.payload_bytes, seconds),
    })
}

/// Reads a whole stream and verifies every checksum and the trailer, touching no device.
/// Returns the header and totals.
pub fn verify<R: Read>(source: R, opts: &Options) -> Result<(StreamHeader, StreamTotals)> {
    let mut reader = StreamReader::new(source)?;
    let mut buf = AlignedBuf::new(reader.header().max_chunk as usize);
    while reader.next_chunk(&mut buf)?.is_some() {
        opts.check_cancel()?;
    }
    Ok((reader.header().clone(), reader.totals()))
}

/// [`restore`] from a file. On a device that cannot be reset the whole file is verified
/// first (see [`recover_device`]).
pub fn restore_from_file(
    drv: &mut dyn MigrationDriver,
    path: &Path,
    opts: &Options,
) -> Result<RestoreReport> {
    let open = || {
        File::open(path)
            .map(|f| std::io::BufReader::with_capacity(64 * 1024, f))
            .map_err(|e| MigrationError::File {
                path: path.display().to_string(),
                source: e,
            })
    };
    let name_it = |e: MigrationError| match e {
        MigrationError::Stream(m) => MigrationError::Stream(format!("{}: {m}", path.display())),
        other => other,
    };
    if !can_reset(drv) {
        // Without a reset, RESUMING cannot be aborted: verify the whole file before the
        // device sees any of it.
        verify(open()?, opts).map_err(name_it)?;
    }
    let mut report = restore(drv, open()?, opts).map_err(|e| match e {
        MigrationError::Stream(m) => MigrationError::Stream(format!("{}: {m}", path.display())),
        other => other,
    })?;
    report.file = Some(path.to_path_buf());
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Migrate

/// Live-migrates `src`'s state into `dst` in this process: `dst` enters RESUMING, `src`
/// pre-copies (when it can and the policy asks) while running, then stops (STOP_COPY) and
/// streams the rest; `dst` commits and runs, then `src` runs again. Reading `src` and writing
/// `dst` overlap. Downtime is measured from `src` leaving RUNNING (entering STOP_COPY) until
/// `dst` is RUNNING. Both devices are RUNNING afterwards, on success and on error.
pub fn migrate(
    src: &mut dyn MigrationDriver,
    dst: &mut dyn MigrationDriver,
    opts: &Options,
) -> Result<MigrateReport> {
    let chunk = opts.chunk_len()?;
    opts.check_cancel()?;
    if opts.check_identity {
        StreamHeader::for_device(src.device(), src.protocol(), src.flags(), None, 1)
            .check_target(dst.device(), dst.protocol())?;
    }
    match migrate_inner(src, dst, opts, chunk) {
        Ok(r) => Ok(r),
        Err(e) => {
            let e = recover_after(dst, e);
            Err(recover_after(src, e))
        }
    }
}

fn migrate_inner(
    src: &mut dyn MigrationDriver,
    dst: &mut dyn MigrationDriver,
    opts: &Options,
    chunk: usize,
) -> Result<MigrateReport> {
    let t0 = Instant::now();
    let expected = src.stop_copy_size().ok().flatten();
    let source = src.device().name().to_string();
    let destination = dst.device().name().to_string();
    let protocol = src.protocol();
    start_from_running(dst)?;
    dst.set_state(MigState::Resuming)?;
    let mut done = 0u64;
    let stats = pipeline(
        chunk,
        opts.overlap,
        Caller::Produces,
        |p| read_source(src, opts, expected, p),
        |kind, data, _| {
            opts.check_cancel()?;
            write_device(dst, data)?;
            done += data.len() as u64;
            opts.report(kind.into(), done, expected);
            Ok(())
        },
    )?;
    let tc = Instant::now();
    dst.set_state(MigState::Running)?;
    let running_at = Instant::now();
    let commit_seconds = running_at.duration_since(tc).as_secs_f64();
    src.set_state(MigState::Running)?;
    let seconds = secs(t0);
    let downtime_seconds = stats
        .stopped_at
        .map(|s| running_at.duration_since(s).as_secs_f64())
        .unwrap_or(0.0);
    let stop_copy_seconds = match (stats.stopped_at, stats.eof_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let bytes = stats.precopy_bytes + stats.stopcopy_bytes;
    Ok(MigrateReport {
        source,
        destination,
        protocol,
        bytes,
        precopy_bytes: stats.precopy_bytes,
        stopcopy_bytes: stats.stopcopy_bytes,
        chunks: stats.chunks,
        rounds: stats.rounds,
        precopy_rounds: stats.round_stats.clone(),
        converged: stats.converged,
        seconds,
        precopy_seconds: stats.precopy_seconds,
        stop_copy_seconds,
        commit_seconds,
        downtime_seconds,
        throughput_bytes_per_s: rate(bytes, seconds),
    })
}

#[cfg(test)]
mod tests;
