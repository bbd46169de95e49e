//! Live migration between two devices in this process.

use super::report::{rate, secs};
use super::ring::{pipeline, Caller};
use super::source::{read_source, write_device};
use super::{MigrateReport, Options};
use crate::device::MigState;
use crate::migration::recovery::{recover_after, recover_at_start};
use crate::migration::stream::StreamHeader;
use crate::migration::{MigrationDriver, Result};
use std::time::Instant;

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
    recover_at_start(dst)?;
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
