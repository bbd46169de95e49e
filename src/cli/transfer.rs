//! Shared plumbing of the transfer commands (`save`, `restore`, `migrate`): the Ctrl-C
//! handler, progress bars, opening migration drivers, and report formatting.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vfio_harness::migration::engine::{Cancel, Phase, Progress, ProgressFn};
use vfio_harness::migration::{driver_for, MigrationDriver, MigrationError};
use vfio_harness::DeviceSpec;

use super::Global;

/// Exit code of a command stopped by Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Transfers smaller than this get no progress bar.
const BAR_THRESHOLD: u64 = 32 << 20;

static CANCEL: OnceLock<Cancel> = OnceLock::new();

extern "C" fn on_sigint(_sig: libc::c_int) {
    // Only an atomic load (OnceLock::get after initialisation) and an atomic store:
    // async-signal-safe.
    if let Some(c) = CANCEL.get() {
        c.store(true, Ordering::SeqCst);
    }
}

/// Installs the SIGINT/SIGTERM handler (once) and returns the flag it sets. The engine polls
/// the flag between chunks and returns devices to RUNNING before the command exits. The
/// handler resets itself, so a second Ctrl-C kills the process the usual way.
pub fn install_interrupt_handler() -> Cancel {
    let flag = CANCEL
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid starting point; we set the handler, an empty
        // mask and flags, and pass valid pointers. The handler only touches atomics.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    flag
}

/// Opens the devices named by `specs` (sharing one IOMMU context) and their migration drivers.
pub fn open_drivers(
    specs: &[DeviceSpec],
    global: &Global,
) -> anyhow::Result<Vec<Box<dyn MigrationDriver>>> {
    let handles = vfio_harness::open_all(specs, &global.open_options())?;
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(driver_for(h)?);
    }
    Ok(out)
}

/// Opens one device and its migration driver.
pub fn open_driver(spec: &DeviceSpec, global: &Global) -> anyhow::Result<Box<dyn MigrationDriver>> {
    open_drivers(std::slice::from_ref(spec), global)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("{spec}: no device opened"))
}

/// `pre-copy N round(s) SIZE [in TIME] (converged|round limit), ` for human summaries, or
/// nothing when no pre-copy round ran.
pub fn precopy_summary(rounds: u32, bytes: u64, seconds: Option<f64>, converged: bool) -> String {
    if rounds == 0 {
        return String::new();
    }
    format!(
        "pre-copy {rounds} round(s) {}{} ({}), ",
        vfio_harness::units::format_bytes(bytes),
        seconds
            .map(|s| format!(" in {}", vfio_harness::units::format_seconds(s)))
            .unwrap_or_default(),
        if converged {
            "converged"
        } else {
            "round limit"
        }
    )
}

/// A progress bar on stderr, shown only on a terminal and for transfers above 32 MiB (or of
/// unknown size once they pass it). `finish` clears it.
pub struct Bar {
    bar: Arc<Mutex<Option<ProgressBar>>>,
    enabled: bool,
}

impl Bar {
    /// A bar labelled `what`; `quiet` (e.g. `--json`) disables it.
    pub fn new(quiet: bool) -> Bar {
        Bar {
            bar: Arc::new(Mutex::new(None)),
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// The engine's progress callback, or `None` when the bar is disabled.
    pub fn callback(&self) -> Option<ProgressFn> {
        if !self.enabled {
            return None;
        }
        let slot = self.bar.clone();
        Some(Arc::new(move |p: &Progress| {
            let Ok(mut guard) = slot.lock() else { return };
            if guard.is_none() {
                if p.expected.unwrap_or(p.bytes).max(p.bytes) < BAR_THRESHOLD {
                    return;
                }
                let b = ProgressBar::with_draw_target(p.expected, ProgressDrawTarget::stderr());
                let style = match p.expected {
                    Some(_) => ProgressStyle::with_template(
                        "{msg:>9} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                    ),
                    None => ProgressStyle::with_template(
                        "{msg:>9} {bytes} {binary_bytes_per_sec} {elapsed}",
                    ),
                };
                if let Ok(s) = style {
                    b.set_style(s.progress_chars("=> "));
                }
                *guard = Some(b);
            }
            if let Some(b) = guard.as_ref() {
                if let Some(e) = p.expected {
                    // Devices may send more than they estimated.
                    b.set_length(e.max(p.bytes));
                }
                b.set_message(match p.phase {
                    Phase::Precopy => "pre-copy",
                    Phase::StopCopy => "stop-copy",
                    Phase::Resume => "resume",
                });
                b.set_position(p.bytes);
            }
        }))
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                b.finish_and_clear();
            }
        }
    }
}

/// Converts an engine error into the command's outcome: interrupted commands exit 130 after
/// saying the devices were recovered; other errors propagate.
pub fn finish_error(e: MigrationError) -> anyhow::Result<std::process::ExitCode> {
    if matches!(e, MigrationError::Interrupted) {
        eprintln!("interrupted: devices returned to RUNNING");
        return Ok(std::process::ExitCode::from(EXIT_INTERRUPTED));
    }
    Err(e.into())
}

// `print_json` lives in `super::output`; re-exported for the commands that import it from here.
pub use super::output::print_json;
