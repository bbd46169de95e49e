//! The transfer commands' signal handler: SIGINT, SIGTERM and SIGHUP cancel the running
//! operation through a [`CancelToken`], and the failure report names the signal.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use vfio_harness::migration::engine::CancelToken;

static TOKEN: OnceLock<Arc<CancelToken>> = OnceLock::new();
/// The first signal caught (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics (OnceLock::get after initialisation is an atomic load) and write(2):
    // async-signal-safe.
    let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    if let Some(t) = TOKEN.get() {
        t.cancel();
    }
}

/// The signal that interrupted the command, if one did.
pub fn caught_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler (once) and returns the token it cancels.
///
/// The handler cancels the token: the engine stops at its next check and every read or
/// write blocked on a pipe, FIFO or socket wakes at once (see
/// [`vfio_harness::migration::engine::cancel`]); devices are returned to RUNNING,
/// temporary files removed, and the command exits 128 + the signal. It is installed
/// without `SA_RESTART` (an interrupted system call returns instead of waiting on) and
/// stays installed: a second signal while the devices are being recovered does not kill
/// the process halfway (SIGKILL still does).
pub fn install_interrupt_handler() -> anyhow::Result<Arc<CancelToken>> {
    let token = match TOKEN.get() {
        Some(t) => t.clone(),
        None => {
            let t = CancelToken::new()
                .map_err(|e| anyhow::anyhow!("cannot create the cancellation pipe: {e}"))?;
            TOKEN.get_or_init(|| t).clone()
        }
    };
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid starting point; we set the handler, an empty
        // mask and no flags, and pass valid pointers. The handler is async-signal-safe.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            anyhow::bail!(
                "cannot install the handler for signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(token)
}
