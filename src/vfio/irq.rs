//! Waiting for interrupts on eventfds: `poll(2)` with a timeout, never sleeps.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A non-blocking eventfd that interrupts are delivered to.
pub struct IrqEvent {
    fd: EventFd,
}

impl IrqEvent {
    /// Creates the eventfd.
    pub fn new() -> io::Result<IrqEvent> {
        Ok(IrqEvent {
            fd: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// The fd to hand to [`crate::device::Device::set_irq_eventfds`].
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads and clears the counter without waiting; 0 when nothing arrived.
    pub fn drain(&self) -> io::Result<u64> {
        match self.fd.read() {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Waits until the eventfd is signalled or `timeout` passes. Returns the counter
    /// (number of signals coalesced) and the time waited, or `None` on timeout.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<(u64, Duration)>> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd, alive for the call.
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                return Ok(None);
            }
            let n = self.drain()?;
            if n > 0 {
                return Ok(Some((n, start.elapsed())));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_sees_a_signal_and_times_out_without_one() {
        let e = IrqEvent::new().unwrap();
        assert_eq!(e.drain().unwrap(), 0);
        e.fd.write(3).unwrap();
        let (n, _) = e.wait(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(n, 3);
        assert!(e.wait(Duration::from_millis(0)).unwrap().is_none());
    }
}
