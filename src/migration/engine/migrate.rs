//! Live migration between two devices in this process.

use super::report::{rate, secs};
use super::ring::guarded;
use super::source::{source_session, transfer, Framing};
use super::{MigrateReport, Options};
use crate::migration::recovery::{recover_after, recover_at_start};
use crate::migration::session::{DestinationSession, EndState};
use crate::migration::stream::StreamHeader;
use crate::migration::{MigrationDriver, Result};
use std::time::Instant;

/// Live-migrates `src`'s state into `dst` in this process: `dst` enters RESUMING, `src`
/// pre-copies (when it can and the policy asks) while running, then stops (STOP_COPY) and
/// streams the rest; `dst` commits and runs, then `src` runs again. Reading `src` and writing
/// `dst` overlap. Downtime is measured from `src` leaving RUNNING (entering STOP_COPY) until
/// `dst` is RUNNING. Both devices are RUNNING afterwards, on success and on error.
///
/// # Examples
///
/// Two pre-copy rounds between simulated devices, the source dirtying 64 MiB/s:
///
/// ```
/// use vfio_harness::migration::{driver_for, engine};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let open = |spec: &str| -> Result<_, Box<dyn std::error::Error>> {
///     let dev = vfio_harness::open(&spec.parse()?, &Default::default())?;
///     Ok(driver_for(dev)?)
/// };
/// let mut src = open("sim:state=1M,seed=3,dirty-rate=64M")?;
/// let mut dst = open("sim:state=1M,verify-seed=3")?;
/// let opts = engine::Options {
///     precopy: engine::PrecopyPolicy { max_rounds: 2, dirty_threshold: 0, ..Default::default() },
///     ..Default::default()
/// };
/// let report = engine::migrate(src.as_mut(), dst.as_mut(), &opts)?;
/// assert!(report.rounds >= 1 && report.bytes >= 1 << 20);
/// assert!(report.downtime_seconds > 0.0);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// Both devices are back in RUNNING when any of these is returned (the destination reset out
/// of RESUMING), or the error is [`Recovery`][E::Recovery], which also says why one could not
/// be returned there. The variants of [`MigrationError`][E]:
/// - [`InvalidBufferSize`][E::InvalidBufferSize]: `opts.buffer_size` is below 4 KiB or above 64 MiB.
/// - [`Incompatible`][E::Incompatible]: with `opts.check_identity`, the destination's
///   identity or protocol differs from the source's (checked before either is touched).
/// - [`WrongState`][E::WrongState]: the destination was left in RESUMING by an earlier
///   session and cannot be reset.
/// - [`Device`][E::Device], [`Protocol`][E::Protocol]: a device refused a transition, a read
///   or a write, broke the protocol, or the destination refused the state.
/// - [`Buffers`][E::Buffers]: the transfer buffers could not be mapped (out of memory, or
///   the process's address-space limit).
/// - [`Interrupted`][E::Interrupted]: `opts.cancel` was set.
///
/// [E]: crate::migration::MigrationError
/// [E::Recovery]: crate::migration::MigrationError::Recovery
/// [E::InvalidBufferSize]: crate::migration::MigrationError::InvalidBufferSize
/// [E::Buffers]: crate::migration::MigrationError::Buffers
/// [E::Incompatible]: crate::migration::MigrationError::Incompatible
/// [E::WrongState]: crate::migration::MigrationError::WrongState
/// [E::Device]: crate::migration::MigrationError::Device
/// [E::Protocol]: crate::migration::MigrationError::Protocol
/// [E::Interrupted]: crate::migration::MigrationError::Interrupted
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
    guarded(&mut [&mut *src, &mut *dst], |d| {
        let [src, dst] = d else {
            unreachable!("two devices were passed")
        };
        match migrate_inner(&mut **src, &mut **dst, opts, chunk) {
            Ok(r) => Ok(r),
            Err(e) => {
                let e = recover_after(&mut **dst, e);
                Err(recover_after(&mut **src, e))
            }
        }
    })
}

fn migrate_inner(
    src: &mut dyn MigrationDriver,
    dst: &mut dyn MigrationDriver,
    opts: &Options,
    chunk: usize,
) -> Result<MigrateReport> {
    let t0 = Instant::now();
    let mut source = source_session(src, opts, chunk)?;
    recover_at_start(dst)?;
    let mut target = DestinationSession::unguarded(dst)?;
    let stats = transfer(
        &mut source,
        opts,
        chunk,
        Framing::default(),
        false,
        |_, frame, at, _| target.write(&frame[at..]),
    )?;
    let tc = Instant::now();
    let written = target.finish(EndState::Running)?;
    let running_at = Instant::now();
    let commit_seconds = running_at.duration_since(tc).as_secs_f64();
    let stopped_at = source.stopped_at();
    let read = source.finish(EndState::Running)?;
    let seconds = secs(t0);
    let downtime_seconds = stopped_at
        .map(|s| running_at.duration_since(s).as_secs_f64())
        .unwrap_or(0.0);
    let bytes = read.bytes();
    Ok(MigrateReport {
        source: read.device,
        destination: written.device,
        protocol: read.protocol,
        bytes,
        precopy_bytes: read.precopy_bytes,
        stopcopy_bytes: read.stopcopy_bytes,
        chunks: read.chunks,
        rounds: stats.rounds,
        precopy_rounds: read.rounds,
        converged: stats.converged,
        precopy_end: stats.precopy_end,
        predicted_downtime_seconds: stats.predicted_downtime,
        seconds,
        precopy_seconds: stats.precopy_seconds,
        stop_copy_seconds: read.stop_copy_seconds,
        commit_seconds,
        downtime_seconds,
        throughput_bytes_per_s: rate(bytes, seconds),
    })
}
