//! What an operation is asked to do: buffer size, pre-copy policy, cancellation, progress.

use crate::migration::stream::{ChunkKind, Compression};
use crate::migration::{MigrationError, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default chunk (buffer) size: 1 MiB, what QEMU reads the data fd with.
pub const DEFAULT_BUFFER: usize = 1 << 20;

pub use crate::migration::MIN_BUFFER;

/// Default of [`Options::max_poll`]: 5 ms. In the bed (QEMU TCG, 2 vCPUs, 1 MiB reads of
/// about 2.4 ms from vhgpu, about 1 ms of hashing and framing per chunk), a thread waiting
/// for its turn at the device that slept after 200 us of polling put the two-thread save at
/// 0.85 to 0.94 of the one-buffer raw loop, one that polled up to 5 ms at 1.01 to 1.06
/// (hw-notes/bench.md, "Session 22"); on a 2-vCPU Xeon, the bench's one-thread restore from
/// a loopback socket took about 6 % less time (medians of seven alternating runs) polling
/// the socket for up to 5 ms before each wait than waiting at once (hw-notes/bench.md,
/// "Session 23").
pub const DEFAULT_MAX_POLL: Duration = Duration::from_millis(5);

/// Most pre-copy rounds an operation runs, whatever [`PrecopyPolicy::max_rounds`] says: each
/// round re-reads what a running device dirtied, so the stream grows with every round.
pub const MAX_PRECOPY_ROUNDS: u32 = 100;

/// A cancellation flag shared with a signal handler or another thread.
pub type Cancel = Arc<AtomicBool>;

/// Progress callback: called after every chunk, from the thread that writes the stream side
/// (a stream file, or the destination device). With [`Options::overlap`] (the default) that
/// is a helper thread for [`save`](super::save()) and [`migrate`](super::migrate()) and the
/// calling thread for [`restore`](super::restore()); without it, always the calling thread.
/// Hence `Send + Sync`. A callback that panics stops the operation: its devices are returned
/// to RUNNING and the panic continues on the calling thread.
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
    /// Maximum pre-copy rounds; 0 disables pre-copy (capped at [`MAX_PRECOPY_ROUNDS`]).
    pub max_rounds: u32,
    /// Converged when the bytes still pending after a round (initial + dirty) are at or below
    /// this.
    pub dirty_threshold: u64,
    /// The longest the device may stay stopped. Pre-copy then also ends as soon as the
    /// predicted downtime (the bytes left to move once stopped over the drain rate measured
    /// in pre-copy) fits; when pre-copy ended otherwise and the prediction does not fit, the
    /// device is not stopped: the operation fails with
    /// [`MigrationError::DowntimeLimit`]
    /// and the source stays RUNNING. `None` (the default): no limit.
    #[serde(default)]
    pub max_downtime: Option<Duration>,
    /// Stop the device even when the predicted downtime exceeds `max_downtime` (the report
    /// still shows the prediction next to the measured downtime).
    #[serde(default)]
    pub force_switchover: bool,
}

/// Options common to every operation.
#[derive(Clone)]
pub struct Options {
    /// Chunk / buffer size in bytes ([`MIN_BUFFER`] ..= 64 MiB).
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
    /// CPU per byte: the data crosses from one core's cache to another's). Off, a restore
    /// verifies each payload as its reads return
    /// ([`StreamReader::verify_as_read`](crate::migration::stream::StreamReader::verify_as_read)).
    /// On, save and migrate read the device from two threads in turn, and a thread waiting
    /// for its turn polls rather than sleeps for up to 1.5 times the last read (at most
    /// [`max_poll`](Self::max_poll)): a slow device's reads cost a second core's time while
    /// they last.
    pub overlap: bool,
    /// How long a thread that would wait for something that usually comes soon polls for it
    /// first ([`DEFAULT_MAX_POLL`] by default): the thread of save and migrate waiting for
    /// its turn at the device (with [`overlap`](Self::overlap); for up to 1.5 times the last
    /// read, at most this), and, without [`overlap`](Self::overlap),
    /// [`restore_from`](super::restore_from)'s reads of a pipe or socket that has nothing to
    /// read yet ([`Cancellable::poll_first`](super::Cancellable::poll_first); overlapped,
    /// the reading thread's polls took CPU time from the writing thread and the input's
    /// feeder, and the restore from a pipe ran slower). A polling thread spins for the first
    /// 200 us and yields the CPU between polls after that; a poll that goes unanswered makes
    /// the next waits sleep at once, for longer after each such poll in a row. Polling trades
    /// CPU time for the wake-ups a sleeping thread costs (in a VM an interrupt to its vCPU):
    /// on a busy host, or against a peer much slower than this side, a shorter limit spends
    /// less; `Duration::ZERO` sleeps at once. (The threads' hand-offs of whole chunks poll
    /// for 50 us whatever this says.)
    pub max_poll: Duration,
    /// How [`save`](super::save()) encodes the stream's chunks (so also a migration to
    /// another host, which carries the same stream): [`Compression::None`] by default, raw
    /// chunks in format version 1 at no extra cost; `Zero` elides zero pages, `Lz4` and
    /// `Auto` also compress (see [`Compression`]). Restoring needs no setting: each chunk
    /// says how it is encoded. An in-process [`migrate`](super::migrate()) has no stream
    /// and ignores it.
    pub compression: Compression,
    /// How [`save_to`](super::save_to) and [`save_to_file`](super::save_to_file) write an
    /// atomic output (a regular file, fsync'd once the stream is complete): with `O_DIRECT`
    /// where its file system allows it (`true`, the default), from the engine's buffers to
    /// the disk with no copy into the page cache and no writeback left for the `fsync`, and
    /// without pushing the host's cached files out for a state of tens of GiB
    /// ([`DirectWriter`](super::DirectWriter)); `false`, through the page cache, its
    /// writeback started every [`WRITE_BEHIND_STEP`](super::WRITE_BEHIND_STEP)
    /// ([`WriteBehind`](super::WriteBehind)), so that reading the file back soon after (a
    /// restore on the same host) finds it in memory.
    /// [`SaveReport::direct_io`](super::SaveReport::direct_io) says which was used. Other
    /// outputs (pipes, FIFOs, sockets, descriptors) are never written direct.
    ///
    /// It also lets [`restore_from`](super::restore_from) read a regular file less than
    /// half of which the page cache holds with `O_DIRECT` ([`DirectReader`](super::DirectReader)):
    /// such a file is read from the disk either way, and direct it is read without
    /// allocating and filling cache pages to copy out of (on a 2-vCPU EPYC guest a cold
    /// 4 GiB file read at 1.3-2.2 GB/s direct against 0.63-0.85 GB/s through the cache;
    /// hw-notes/bench.md, "Session 26"). A file the cache holds is read from memory.
    /// [`RestoreReport::direct_io`](super::RestoreReport::direct_io) says which was used.
    pub direct_io: bool,
    /// Holds the chunk buffers of a save or migration in transparent huge pages
    /// ([`crate::mem::AnonBuf::huge`]). For a sink written with `O_DIRECT` from those
    /// buffers: the kernel makes one disk request segment per physically contiguous run of
    /// a buffer, a disk takes a bounded number per request (254 on virtio-blk), and a 1 MiB
    /// chunk of scattered 4 KiB pages is split into two requests, which on a 2-vCPU EPYC
    /// guest read and wrote at half the rate of one (hw-notes/bench.md, "Session 28").
    /// Each buffer is then rounded up to whole 2 MiB pages, all resident. [`save_to`] sets
    /// it when it writes a file direct; `false` by default.
    ///
    /// [`save_to`]: super::save_to
    pub huge_buffers: bool,
    /// With [`overlap`](Self::overlap), each of the two threads of a save or migration
    /// writes the chunk it read into the stream itself, waiting (asleep) for the other
    /// thread's write before it to end, so each chunk is copied into the sink from the
    /// cache of the core that read it. `false` (the default): a chunk read while the other
    /// thread writes is queued for that thread, which writes the queued chunks one after
    /// another with no hand-over between them, while this one reads ahead. The queue keeps
    /// a sink that takes one write at a time and holds nothing of its own busy (a disk
    /// written `O_DIRECT`, a writer paced to a fixed rate: a capped sink lost 5 % with own
    /// puts). [`save_to`](super::save_to) sets it when its output is a socket: on a 2-vCPU
    /// Xeon guest the harness's 4 GiB save into a loopback connection took a median 1.42 s
    /// with own puts and 1.61 s without (six alternated blocks each); on a 2-vCPU EPYC guest
    /// the two did not separate. Into a pipe the better choice depended on the machine: on
    /// the EPYC a 4 GiB save ran at a median 1.04 of a one-buffer loop with own puts and
    /// 0.92 without (nine blocks each), on the Xeon the harness took a median 1.83 s with
    /// own puts and 1.44 s without (six blocks each), so a pipe is written from the queue
    /// (hw-notes/bench.md, "Session 29", "Session 30" and "Session 40").
    pub put_own_chunks: bool,
    /// Moves the device together with others through the P2P states: called on a thread
    /// of the operation ([`P2pHook`](super::P2pHook)) at the [`P2pStep`](super::P2pStep)s ([`P2pBarrier::hook`](super::P2pBarrier::hook)
    /// makes the operations of a group wait for each other there). [`save`](super::save())
    /// and [`migrate`](super::migrate()) call it for their source, which then enters
    /// RUNNING_P2P / PRE_COPY_P2P before it stops; [`restore`](super::restore()) for its
    /// destination, which loads the state into RUNNING_P2P (STOP without P2P states) before
    /// it runs. An error from it ends the operation (see [`P2pHook`](super::P2pHook)).
    /// `None` (the default): neither.
    pub p2p: Option<super::P2pHook>,
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
            max_poll: DEFAULT_MAX_POLL,
            compression: Compression::None,
            direct_io: true,
            huge_buffers: false,
            put_own_chunks: false,
            p2p: None,
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
            .field("max_poll", &self.max_poll)
            .field("compression", &self.compression)
            .field("direct_io", &self.direct_io)
            .field("huge_buffers", &self.huge_buffers)
            .field("put_own_chunks", &self.put_own_chunks)
            .field("p2p", &self.p2p.is_some())
            .finish()
    }
}

impl Options {
    pub(super) fn chunk_len(&self) -> Result<usize> {
        crate::migration::chunk_size::checked(self.buffer_size)
    }

    /// The error to report for `e`: [`MigrationError::Interrupted`] when the operation was
    /// cancelled (a blocked read or write ended by the cancel fails with an I/O error that
    /// is only its consequence).
    pub(super) fn cause(&self, e: MigrationError) -> MigrationError {
        if self.cancelled() {
            MigrationError::Interrupted
        } else {
            e
        }
    }

    /// Pre-copy rounds actually run: the policy's, at most [`MAX_PRECOPY_ROUNDS`].
    pub(super) fn max_rounds(&self) -> u32 {
        self.precopy.max_rounds.min(MAX_PRECOPY_ROUNDS)
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    pub(super) fn check_cancel(&self) -> Result<()> {
        if self.cancelled() {
            Err(MigrationError::Interrupted)
        } else {
            Ok(())
        }
    }

    pub(super) fn report(&self, phase: Phase, bytes: u64, expected: Option<u64>) {
        if let Some(p) = &self.progress {
            p(&Progress {
                phase,
                bytes,
                expected,
            });
        }
    }
}
