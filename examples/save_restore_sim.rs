//! Save a simulated device's state and restore it into a second one, through the
//! protocol-independent `MigrationDriver` interface, with one bounded buffer.
//!
//! `cargo run --example save_restore_sim [SRC_SPEC [DST_SPEC]]`
//! (defaults: `sim:protocol=v2,state=64M,seed=7` into `sim:protocol=v2,state=64M,verify-seed=7`;
//! try `protocol=v1` on both, or a wrong `verify-seed` to see the destination refuse).

use std::time::Instant;
use vfio_harness::device::{DeviceSpec, MigState, OpenOptions};
use vfio_harness::migration::{driver_for, MigrationDriver};
use vfio_harness::units::{format_bytes, format_rate};

fn open(spec: &str) -> anyhow::Result<Box<dyn MigrationDriver>> {
    let spec: DeviceSpec = spec.parse()?;
    let dev = vfio_harness::open(&spec, &OpenOptions::default())?;
    Ok(driver_for(dev)?)
}

/// Moves everything `src` has to give right now into `dst`; returns the byte count.
fn pump(
    src: &mut dyn MigrationDriver,
    dst: &mut dyn MigrationDriver,
    buf: &mut [u8],
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = src.read(buf)?;
        if n == 0 {
            return Ok(total);
        }
        let mut off = 0;
        while off < n {
            off += dst.write(&buf[off..n])?;
        }
        total += n as u64;
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let src_spec = args
        .next()
        .unwrap_or_else(|| "sim:protocol=v2,state=64M,seed=7".into());
    let dst_spec = args
        .next()
        .unwrap_or_else(|| "sim:protocol=v2,state=64M,verify-seed=7".into());
    let mut src = open(&src_spec)?;
    let mut dst = open(&dst_spec)?;
    println!(
        "{src_spec} ({}) -> {dst_spec} ({})",
        src.protocol(),
        dst.protocol()
    );

    // The only memory the transfer uses: one 1 MiB buffer (QEMU's read size).
    let mut buf = vec![0u8; 1 << 20];
    let t0 = Instant::now();
    dst.set_state(MigState::Resuming)?;
    src.set_state(MigState::PreCopy)?;
    let pre = pump(src.as_mut(), dst.as_mut(), &mut buf)?;
    let t1 = Instant::now();
    src.set_state(MigState::StopCopy)?;
    let stop = pump(src.as_mut(), dst.as_mut(), &mut buf)?;
    src.set_state(MigState::Stop)?;
    // Leaving RESUMING is where the destination validates the state (and may refuse).
    let result = dst.set_state(MigState::Running);
    let t2 = Instant::now();
    src.recover()?;
    if let Err(e) = result {
        dst.recover()?;
        anyhow::bail!("the destination refused the state: {e}");
    }
    let total = pre + stop;
    let secs = (t2 - t0).as_secs_f64();
    println!(
        "pre-copy {}, stop-copy {} in {:.3} s ({}), stop-copy phase {:.3} ms; destination is {}",
        format_bytes(pre),
        format_bytes(stop),
        secs,
        format_rate(total as f64 / secs),
        (t2 - t1).as_secs_f64() * 1e3,
        dst.state()?
    );
    Ok(())
}
