//! The physical reference: single-thread memcpy at every buffer size of the run (and at the
//! main buffer).

use super::Run;
use crate::bench::buf;
use crate::bench::error::BenchError;
use crate::bench::report::MemcpyPoint;
use crate::units::format_bytes;
use std::time::Duration;

/// Measures memcpy at every buffer size into `run.memcpy`; returns the size of each of the
/// two regions copied between.
pub(in crate::bench) fn reference(run: &mut Run<'_>) -> Result<usize, BenchError> {
    let cfg = run.cfg;
    let min_time = if cfg.quick {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(250)
    };
    let region = buf::memcpy_region(*cfg.buffers.iter().max().unwrap_or(&cfg.buffer), cfg.quick);
    let mut buffers_for_memcpy = cfg.buffers.clone();
    if !buffers_for_memcpy.contains(&cfg.buffer) {
        buffers_for_memcpy.push(cfg.buffer);
    }
    for &b in &buffers_for_memcpy {
        cfg.check_cancel()?;
        run.progress
            .step(&format!("memcpy reference, {} copies", format_bytes(b)));
        if let Some(r) = buf::memcpy_bandwidth(b as usize, region, min_time) {
            run.memcpy.push(MemcpyPoint {
                buffer_bytes: b,
                bytes_per_s: r.round(),
            });
        }
    }
    Ok(region)
}
