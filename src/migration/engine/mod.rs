//! The save / restore / live-migrate engine: the data path between a device's migration
//! stream and a file or another device, one call per operation. For a migration driven step
//! by step (a VMM pausing its vCPUs before the device stops, a source left STOP, several
//! devices through the P2P states together) see [`crate::migration::session`]; for several
//! one-call operations on parallel threads that must pass the P2P states together, the
//! [`Options::p2p`] hook and its [`P2pBarrier`].
//!
//! Design:
//! - **Built on the sessions.** The device's side of every operation is a
//!   [`crate::migration::session`]: a [`SourceSession`](crate::migration::session::SourceSession)
//!   reads the source (pre-copy rounds and STOP_COPY, in the pull form that fills the
//!   engine's buffers), a [`DestinationSession`](crate::migration::session::DestinationSession) takes
//!   the state in RESUMING; the engine adds the pre-copy policy (when to stop), the two
//!   threads, the stream and the recovery of its devices on every error and panic.
//! - **Bounded memory.** At most [`RING`] page-aligned buffers (each one chunk) per
//!   operation, made as needed and reused; nothing is allocated per chunk, so the footprint
//!   is the same for a 4 KiB and a 4 GiB state.
//! - **Overlap.** Save and migrate read the device on two threads that share it (`turns`):
//!   one reads the next chunk while the other hashes and puts the chunk it read, in stream
//!   order, from its own buffer (so in its own core's cache); when the sink is the slower
//!   side, one thread puts every queued chunk in turn while the other reads ahead. Restore
//!   reads the stream file on a helper thread into a free buffer while the calling thread
//!   drains a full one into the device; those buffers travel through two bounded channels
//!   (full ones forward, empty ones back).
//! - **Integrity.** Saving frames and checksums on the fly ([`super::stream`]). Restoring
//!   verifies each chunk's checksum before its bytes reach the device and leaves RESUMING
//!   (which commits the state) only after the trailer verified.
//! - **Devices are left RUNNING**, on success and on every error path (a panicking progress
//!   callback, sink or source included: the panic continues once they are), by the rules of
//!   [`crate::migration::recovery`] (a device caught in RESUMING is reset, since vfio.h says a
//!   RESUMING session can only be aborted by reset).
//!   If recovery fails too, [`MigrationError::Recovery`](crate::migration::MigrationError::Recovery) carries both errors.
//! - **Cancellation.** A shared flag ([`Cancel`]) is polled between chunks; a
//!   [`CancelToken`] also wakes reads and writes blocked on pipes, FIFOs and sockets
//!   ([`cancel`]). The CLI cancels it from its SIGINT/SIGTERM/SIGHUP handler, so a signal
//!   still returns devices to RUNNING.
//! - **Targets.** [`Output`] writes regular files atomically and streams to FIFOs, devices
//!   and pipes directly; [`Input`] is opened once for every pass ([`target`]). A regular
//!   file is written with `O_DIRECT` where its file system takes it ([`DirectWriter`],
//!   [`Options::direct_io`]), else through the page cache with its writeback started as
//!   it is written ([`WriteBehind`]).
//!
//! One file per part: [`options`](Options) and reports, the buffers (page-aligned, from one
//! [`crate::mem::BufPool`], zeroed when reused), the ring between restore's two sides, the two
//! threads sharing a source, reading a device (the source side of save and migrate, through
//! its session),
//! and the three operations: [`save`](save()), [`restore`](restore()), [`migrate`](migrate()).

mod buf;
pub mod cancel;
mod direct;
mod direct_read;
mod low_water;
mod migrate;
mod options;
mod p2p;
mod pipe;
mod poll;
mod precopy;
mod report;
mod resident;
mod restore;
mod ring;
mod save;
mod source;
pub mod target;
mod turns;
mod write_behind;

pub(crate) use buf::AlignedBuf;
pub use migrate::migrate;
pub use options::{
    Cancel, Options, Phase, PrecopyPolicy, Progress, ProgressFn, DEFAULT_BUFFER, DEFAULT_MAX_POLL,
    MAX_PRECOPY_ROUNDS, MIN_BUFFER,
};
pub use p2p::{P2pBarrier, P2pHook, P2pPoint, P2pStep};
pub use precopy::{drain_rate, predicted_downtime, PrecopyEnd};
// Recovery lives in `crate::migration::recovery`; re-exported for the engine's former paths.
pub use crate::migration::recovery::{can_reset, recover_after, recover_device};
pub use cancel::{CancelToken, Cancellable};
pub use direct::{enable_direct, DirectWriter, DIRECT_ALIGN, DIRECT_STAGE};
pub use direct_read::DirectReader;
pub(crate) use low_water::set_rcvlowat;
#[cfg(test)]
pub(crate) use low_water::sockopt;
pub(crate) use low_water::LowWater;
pub use low_water::LOW_WATER_MAX;
pub use report::{MigrateReport, RestoreReport, RoundStats, SaveReport};
pub(crate) use resident::{page_flags, resident_bytes};
pub use restore::{restore, restore_from, restore_from_file, verify};
pub use ring::RING;
pub use save::{save, save_to, save_to_file};
pub use target::{Input, Output};
pub use write_behind::{WriteBehind, WRITE_BEHIND_STEP};

#[cfg(test)]
mod p2p_tests;
#[cfg(test)]
mod panic_tests;
#[cfg(test)]
mod switchover_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod turns_tests;
