//! Live migration between two devices with the library's engine, as a VMM would embed it:
//! pre-copy while the source keeps running (here a simulated device that keeps dirtying its
//! state), a convergence policy, then stop-and-copy, with the downtime measured.
//!
//! Runs against the simulator; give two kernel devices instead to migrate real state:
//! `cargo run --example live_migrate -- SRC DST`.

use vfio_harness::device::{DeviceSpec, OpenOptions};
use vfio_harness::migration::driver_for;
use vfio_harness::migration::engine::{self, Options, PrecopyPolicy};
use vfio_harness::units::{format_bytes, format_rate, format_seconds};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let specs: Vec<DeviceSpec> = if args.len() == 2 {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    } else {
        vec![
            "sim:state=128M,seed=11,dirty-rate=256M/s".parse()?,
            "sim:state=128M,verify-seed=11".parse()?,
        ]
    };
    let devices = vfio_harness::open_all(&specs, &OpenOptions::default())?;
    let mut src = driver_for(devices[0].clone())?;
    let mut dst = driver_for(devices[1].clone())?;

    let opts = Options {
        precopy: PrecopyPolicy {
            // Stop pre-copying once at most 4 MiB is still dirty, or after 8 rounds.
            max_rounds: 8,
            dirty_threshold: 4 << 20,
            ..Default::default()
        },
        ..Options::default()
    };
    let r = engine::migrate(src.as_mut(), dst.as_mut(), &opts)?;
    println!(
        "{} -> {}: {} ({} pre-copy in {} round(s), {} stop-copy), {}, downtime {}, converged: {}",
        r.source,
        r.destination,
        format_bytes(r.bytes),
        format_bytes(r.precopy_bytes),
        r.rounds,
        format_bytes(r.stopcopy_bytes),
        format_rate(r.throughput_bytes_per_s),
        format_seconds(r.downtime_seconds),
        r.converged
    );
    Ok(())
}
