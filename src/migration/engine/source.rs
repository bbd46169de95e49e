//! Reading a device: the source side of save and migrate (pre-copy rounds, then STOP_COPY),
//! and writing a device in RESUMING.

use super::report::secs;
use super::ring::{Filled, Producer};
use super::{Options, RoundStats};
use crate::device::MigState;
use crate::migration::stream::{stop_copy_limit, ChunkKind};
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::time::Instant;

/// What the device-reading side did.
#[derive(Clone, Debug, Default)]
pub(super) struct SourceStats {
    pub(super) precopy_bytes: u64,
    pub(super) round_stats: Vec<RoundStats>,
    pub(super) stopcopy_bytes: u64,
    pub(super) chunks: u64,
    pub(super) rounds: u32,
    pub(super) converged: bool,
    pub(super) precopy_seconds: f64,
    /// When the source was asked to leave RUNNING for STOP_COPY.
    pub(super) stopped_at: Option<Instant>,
    /// When STOP_COPY reached end of stream.
    pub(super) eof_at: Option<Instant>,
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
pub(super) fn read_source(
    drv: &mut dyn MigrationDriver,
    opts: &Options,
    estimate: Option<u64>,
    p: &Producer,
) -> Result<SourceStats> {
    let mut st = SourceStats::default();
    let policy = opts.precopy;
    let max_rounds = opts.max_rounds();
    let flags = drv.flags();
    if max_rounds > 0 && flags.has(crate::device::MigFlags::PRE_COPY) {
        let t0 = Instant::now();
        // Pre-copy data is bounded like STOP_COPY data (a device dirtying faster than it is
        // read would otherwise grow the stream for as many rounds as asked); past the bound
        // pre-copy ends unconverged and STOP_COPY begins.
        let precopy_cap = estimate.map(stop_copy_limit);
        let mut over_cap = false;
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
                let room = precopy_cap.map_or(u64::MAX, |c| c - st.precopy_bytes);
                if room == 0 {
                    over_cap = true;
                    break;
                }
                let mut buf = p.take()?;
                let want = budget.min(room).min(usize::MAX as u64) as usize;
                let n = fill(drv, &mut buf, want, opts)?;
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
            if st.rounds >= max_rounds || over_cap {
                break;
            }
        }
        st.precopy_seconds = t0.elapsed().as_secs_f64();
    }
    opts.check_cancel()?;
    st.stopped_at = Some(Instant::now());
    drv.set_state(MigState::StopCopy)?;
    // Bounded by the fresh estimate, and by the one in the stream header when it is
    // smaller, so that every stream saved can be restored (the reader holds STOP_COPY data
    // to the header's bound).
    let fresh = match (stop_copy_estimate(drv), estimate) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let limit = fresh.map(stop_copy_limit);
    loop {
        let mut buf = p.take()?;
        let n = fill(drv, &mut buf, usize::MAX, opts)?;
        if n == 0 {
            break;
        }
        st.stopcopy_bytes += n as u64;
        st.chunks += 1;
        if let Some(l) = limit {
            if st.stopcopy_bytes > l {
                return Err(MigrationError::Protocol {
                    device: drv.device().name().to_string(),
                    what: format!(
                        "STOP_COPY keeps streaming: {} bytes read, the device estimated {} on entering STOP_COPY (the end of stream never came)",
                        st.stopcopy_bytes,
                        fresh.unwrap_or(0)
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

/// The device's estimate of what is left, taken just after entering STOP_COPY: v2's
/// STOP_COPY size, or v1's pending bytes (v1 has no separate estimate). `None` when the
/// device offers neither.
fn stop_copy_estimate(drv: &mut dyn MigrationDriver) -> Option<u64> {
    if let Ok(Some(n)) = drv.stop_copy_size() {
        return Some(n);
    }
    if drv.protocol() == crate::migration::Protocol::V1 {
        // Nothing has been read in STOP_COPY yet, so no split chunk is held.
        return drv.pending().ok().map(|p| p.total());
    }
    None
}

/// Writes all of `data` into a device in RESUMING.
pub(super) fn write_device(drv: &mut dyn MigrationDriver, mut data: &[u8]) -> Result<()> {
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
