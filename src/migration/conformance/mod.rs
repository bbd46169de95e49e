//! The conformance suite: the migration contract of `include/uapi/linux/vfio.h` (6.12),
//! clause by clause, on a real or simulated device; one [`Check`] per clause, each named by
//! an id (see [`CLAUSES`]; `docs/conformance.md` describes every check).
//!
//! Protocol v2: `state-after-arc`, `stop-copy-eof`, `data-size`, `read-size`,
//! `new-data-fd`, `session-ends`, `precopy-info-state`, `precopy-initial`,
//! `precopy-info-agrees`, `precopy-path`, `resume-loads`, `write-size`, `reset`,
//! `resume-refuses`, `dma-logging`. Protocol v1 (the migration region): `v1-pending`,
//! `v1-data-window`, `v1-state-bits`, `state-after-arc`, `v1-resume-loads`,
//! `reset`, `resume-refuses`. Both start with `start-running` and end with `left-running`
//! (answered by the harness, and marked so).
//!
//! To tell a restore that loads nothing from a real one, the suite first makes the device's
//! state differ from the one it restores, with a [`Perturb`] (built in for mtty and vhgpu,
//! or a user's region write). Streams are compared by checksum while they stream; the one
//! reference stream the resume checks write back is kept in an unnamed temporary file (up
//! to [`Options::hold_limit`]), never in memory, and every read loop is bounded in bytes and
//! time.

mod ctx;
mod dma_log;
mod estimate;
mod fds;
pub mod perturb;
mod report;
mod reset;
mod v1;
mod v2_precopy;
mod v2_resume;
mod v2_save;
mod v2_state;

pub use perturb::{Perturb, RegionWrite};
pub use report::{clause, Check, CheckVerdict, ConformanceReport, CLAUSES};

use super::MigrationDriver;
use crate::device::MigState;
use ctx::Suite;
use std::time::{Duration, Instant};

/// Tuning of the suite.
#[derive(Clone, Debug)]
pub struct Options {
    /// Read buffer size (the largest single read), held to
    /// [`MIN_BUFFER`](crate::migration::MIN_BUFFER)..=64 MiB like every other operation's.
    pub buffer: usize,
    /// Largest stream accepted before a read loop counts as never ending. `None`: twice the
    /// device's stop-copy estimate plus 64 MiB, or 16 GiB without an estimate.
    pub read_limit: Option<u64>,
    /// Longest any one read loop may take.
    pub time_limit: Duration,
    /// Largest reference stream kept (in a temporary file) for the resume checks; above it
    /// they skip.
    pub hold_limit: u64,
    /// User perturbations (region writes), applied after the built-in one.
    pub perturb: Vec<RegionWrite>,
    /// Use the built-in perturbation for the device (mtty, vhgpu) when there is one.
    pub builtin_perturb: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            buffer: 1 << 20,
            read_limit: None,
            time_limit: Duration::from_secs(300),
            hold_limit: 4 << 30,
            perturb: Vec::new(),
            builtin_perturb: true,
        }
    }
}

/// Runs the suite with the perturbations `opts` selects. `on_check` sees each check as it
/// completes (for live output). The device is left RUNNING (by reset if needed).
///
/// # Examples
///
/// A well-behaved simulated device passes; one whose STOP_COPY stream never ends fails the
/// `stop-copy-eof` check:
///
/// ```
/// use vfio_harness::migration::conformance::{self, CheckVerdict, Options};
/// use vfio_harness::migration::driver_for;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dev = vfio_harness::open(&"sim:state=1M,seed=3".parse()?, &Default::default())?;
/// let report = conformance::run(driver_for(dev)?.as_mut(), &Options::default(), &mut |c| {
///     println!("{} {} {}: {}", c.verdict, c.id, c.clause, c.detail)
/// });
/// assert_eq!(report.failed, 0);
///
/// let spec = "sim:state=64K,violate=endless-read".parse()?;
/// let dev = vfio_harness::open(&spec, &Default::default())?;
/// let opts = Options { read_limit: Some(1 << 20), ..Default::default() };
/// let report = conformance::run(driver_for(dev)?.as_mut(), &opts, &mut |_| {});
/// assert_eq!(report.check("stop-copy-eof").map(|c| c.verdict), Some(CheckVerdict::Fail));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// None are returned: the suite's findings are its report. A check whose device calls fail
/// is recorded as [`CheckVerdict::Fail`] with the error in its [`detail`](Check::detail),
/// and the suite goes on from RUNNING.
pub fn run(
    drv: &mut dyn MigrationDriver,
    opts: &Options,
    on_check: &mut dyn FnMut(&Check),
) -> ConformanceReport {
    let mut chain: Vec<Box<dyn Perturb>> = Vec::new();
    if opts.builtin_perturb {
        if let Some(p) = perturb::detect(drv.device()) {
            chain.push(p);
        }
    }
    for w in &opts.perturb {
        chain.push(Box::new(w.clone()));
    }
    let p: Option<Box<dyn Perturb>> = match chain.len() {
        0 => None,
        1 => chain.pop(),
        _ => Some(Box::new(perturb::Chain(chain))),
    };
    run_with(drv, opts, p, on_check)
}

/// Runs the suite with a caller's perturbation (`None`: none; the resume checks then warn
/// that a restore that loads nothing cannot be told from a real one).
pub fn run_with(
    drv: &mut dyn MigrationDriver,
    opts: &Options,
    perturb: Option<Box<dyn Perturb>>,
    on_check: &mut dyn FnMut(&Check),
) -> ConformanceReport {
    let flags = drv.flags();
    let dev = drv.device().clone();
    let v2 = drv.protocol() == super::Protocol::V2;
    let estimate = drv.stop_copy_size().ok().flatten();
    let limit = opts.read_limit.unwrap_or(match estimate {
        Some(e) => e.saturating_mul(2).saturating_add(64 << 20),
        None => 16 << 30,
    });
    let perturbation = perturb
        .as_ref()
        .map(|p| p.describe())
        .unwrap_or_else(|| "none".into());
    let mut s = Suite {
        drv,
        dev,
        v2,
        flags,
        opts,
        limit,
        buf: vec![
            0u8;
            opts.buffer.clamp(
                crate::migration::MIN_BUFFER,
                crate::migration::stream::MAX_CHUNK_LEN as usize
            )
        ],
        perturb,
        reference: None,
        reproducible: false,
        estimate,
        checks: Vec::new(),
        on_check,
    };

    let start = Instant::now();
    match s.drv.state() {
        Ok(MigState::Running) => s.push(
            "start-running",
            CheckVerdict::Pass,
            "(harness) the device is RUNNING".into(),
            start,
        ),
        other => {
            let r = s.back_to_running();
            s.push(
                "start-running",
                CheckVerdict::Fail,
                format!("(harness) the device was in {other:?} before the suite; recovery: {r:?}"),
                start,
            );
        }
    }

    if v2 {
        v2_save::reference(&mut s, "stop-copy-eof");
        estimate::data_size(&mut s);
        v2_save::read_size(&mut s);
        v2_save::new_data_fd(&mut s);
        v2_save::session_ends(&mut s);
        v2_state::state_after_arc(&mut s);
        v2_precopy::info_state(&mut s);
        v2_precopy::initial_and_agreement(&mut s);
        v2_precopy::path(&mut s);
        v2_resume::loads(&mut s, "resume-loads");
        v2_resume::write_size(&mut s);
        // Before resume-refuses: a device whose reset does nothing cannot be brought back
        // from a refused restore, and this check should say why first.
        reset::reset(&mut s);
        v2_resume::refuses(&mut s);
        dma_log::dma_logging(&mut s);
    } else {
        v2_save::reference(&mut s, "v1-pending");
        v1::data_window(&mut s);
        v1::state_bits_check(&mut s);
        v2_state::state_after_arc(&mut s);
        v2_resume::loads(&mut s, "v1-resume-loads");
        reset::reset(&mut s);
        v2_resume::refuses(&mut s);
    }

    let start = Instant::now();
    let r = s.back_to_running();
    let (v, d) = match (r, s.drv.state()) {
        (Ok(()), Ok(MigState::Running)) => (
            CheckVerdict::Pass,
            "(harness) the device is RUNNING".to_string(),
        ),
        (r, st) => (
            CheckVerdict::Fail,
            format!("(harness) could not return the device to RUNNING: {r:?}, state {st:?}"),
        ),
    };
    s.push("left-running", v, d, start);

    let count = |v| s.checks.iter().filter(|c| c.verdict == v).count();
    ConformanceReport {
        device: s.dev.name().to_string(),
        protocol: s.drv.protocol().to_string(),
        flags: flags.names(),
        perturbation,
        passed: count(CheckVerdict::Pass),
        failed: count(CheckVerdict::Fail),
        warned: count(CheckVerdict::Warn),
        skipped: count(CheckVerdict::Skip),
        checks: s.checks,
    }
}
