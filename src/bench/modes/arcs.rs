//! The `arcs` mode: the latency of every single arc of the state machine, on the arc device
//! (on the simulator, a separate small-state one).

use super::{alloc, tempfile, Run};
use crate::bench::arcs::{self, ArcRow};
use crate::bench::devices::driver;
use crate::bench::error::{mig, BenchError};
use crate::bench::raw;

/// The arc rows and the device they were measured on.
pub(in crate::bench) fn measure(run: &mut Run<'_>) -> Result<(Vec<ArcRow>, String), BenchError> {
    let cfg = run.cfg;
    cfg.check_cancel()?;
    let (dev, name) = &run.devs.arcs;
    let mut d = driver(dev)?;
    let mut b = alloc(cfg.buffer, "the arc buffer")?;
    let mut f = tempfile()?;
    let cap = raw::save(d.as_mut(), &mut b, Some(&mut f)).map_err(mig("arcs: reference save"))?;
    // Arcs out of RESUMING write a whole state each time: bound that to ~256 MiB (but at
    // least 3), and never above --arc-repeat (`clamp` would panic when it is below 3).
    let resume_reps = ((256u64 << 20) / cap.bytes.max(1))
        .max(3)
        .min(cfg.arc_repeat as u64) as usize;
    let reference = arcs::Reference {
        file: &f,
        len: cap.bytes,
    };
    let flags = d.flags();
    let list = crate::device::fsm::arcs(flags);
    let mut i = 0;
    let progress = &mut run.progress;
    if let Some((a, z)) = list.first() {
        progress.step(&format!("arc {a} -> {z}"));
    }
    let rows = arcs::measure(
        d.as_mut(),
        cfg.arc_repeat,
        resume_reps,
        &reference,
        &mut b,
        || {
            i += 1;
            if let Some((a, z)) = list.get(i) {
                progress.step(&format!("arc {a} -> {z}"));
            }
        },
    );
    Ok((rows, name.clone()))
}
