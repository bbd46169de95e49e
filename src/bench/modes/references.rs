//! The physical reference rows of the save and live blocks: a memory copy doing the copies the
//! path makes, or one cache-hot buffer written into the path's sink.

use super::{io_of, Contender, Sample};
use crate::bench::config::Kind;
use crate::bench::error::BenchError;
use crate::bench::io::SinkTarget;
use crate::bench::reference::{self, Copy};
use std::time::Duration;

/// The memory reference: `copy` over a region the size of a `state`-byte device (at most
/// [`reference::MAX_REGION`]), `b` bytes at a time, repeated for at least `min_time`. Its
/// buffers are the buffer and the regions it copies out of and into.
pub(super) fn memory<'a>(copy: Copy, b: u64, state: u64, min_time: Duration) -> Contender<'a> {
    let region = reference::region_for(state, b);
    Contender {
        kind: Kind::Reference,
        buffer: b,
        buffers_bytes: copy.regions() * region as u64 + b,
        what: copy.describe(b as usize, region),
        job: Box::new(move || {
            let r = reference::copy_rate(copy, b as usize, region, min_time).ok_or_else(|| {
                BenchError::Config(format!(
                    "no memory for the reference ({})",
                    copy.describe(b as usize, region)
                ))
            })?;
            Ok((
                region as f64 / r,
                Sample {
                    bytes: region as u64,
                    ..Sample::default()
                },
            ))
        }),
    }
}

/// The sink reference: one cache-hot `b`-byte buffer written into `target` until `state`
/// bytes went in. `buffers_bytes` is the buffer memory the block counts for it, as it counts
/// its other rows'.
pub(super) fn sink(target: &SinkTarget, state: u64, b: u64, buffers_bytes: u64) -> Contender<'_> {
    Contender {
        kind: Kind::Reference,
        buffer: b,
        buffers_bytes,
        what: format!(
            "write(2) of one cache-hot buffer into {}",
            target.describe()
        ),
        job: Box::new(move || {
            let s = reference::sink_rate(target, state, b as usize)
                .map_err(io_of("the sink reference"))?;
            Ok((
                s,
                Sample {
                    bytes: state,
                    ..Sample::default()
                },
            ))
        }),
    }
}
