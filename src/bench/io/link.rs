//! A capped network link as a sink: bytes cross at `rate`, behind a send buffer of
//! [`SEND_BUFFER`] bytes (Linux's largest default TCP send buffer, `tcp_wmem`'s maximum). A
//! write returns as soon as its bytes fit in the buffer; the link keeps draining while the
//! writer does other work (framing, hashing, encoding), as a socket does, and sits idle only
//! when the buffer is empty. Finishing waits until the last byte crossed.
//!
//! Unlike the overlap mode's paced sink (a synchronous write that takes `bytes / rate`), the
//! writer's own time between writes is not added to the link's, so the rows measure what the
//! link carries, not how the writer interleaves with it.

use std::time::{Duration, Instant};

/// Bytes the link holds before a write waits (4 MiB).
pub(in crate::bench) const SEND_BUFFER: u64 = 4 << 20;

/// The link's schedule.
#[derive(Debug)]
pub(in crate::bench) struct Link {
    rate: f64,
    /// When the bytes written so far will have crossed.
    busy_until: Option<Instant>,
}

impl Link {
    /// A link carrying `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> Link {
        Link {
            rate: rate.max(1) as f64,
            busy_until: None,
        }
    }

    /// When `bytes` written at `now` will have crossed, and until when the writer waits
    /// (until what is left in the buffer fits it). Records the schedule.
    pub fn schedule(&mut self, now: Instant, bytes: usize) -> (Instant, Instant) {
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let end = start + Duration::from_secs_f64(bytes as f64 / self.rate);
        self.busy_until = Some(end);
        let buffered = Duration::from_secs_f64(SEND_BUFFER as f64 / self.rate);
        (end, end.checked_sub(buffered).unwrap_or(now).max(now))
    }

    /// Takes `bytes`: waits while the buffer is over full.
    pub fn write(&mut self, bytes: usize) {
        let now = Instant::now();
        let (_, ret) = self.schedule(now, bytes);
        if ret > now {
            std::thread::sleep(ret - now);
        }
    }

    /// Waits until everything written crossed.
    pub fn drain(&self) {
        if let Some(end) = self.busy_until {
            let now = Instant::now();
            if end > now {
                std::thread::sleep(end - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_absorbs_the_writers_pauses() {
        let l = &mut Link::new(1 << 20); // 1 MiB/s: 4 s of buffer
        let t0 = Instant::now();
        // 1 MiB fits the buffer: no wait, crossed after a second.
        let (end, ret) = l.schedule(t0, 1 << 20);
        assert_eq!((end - t0, ret), (Duration::from_secs(1), t0));
        // The writer away for half a second: the link kept going, no time lost.
        let (end2, _) = l.schedule(t0 + Duration::from_millis(500), 1 << 20);
        assert_eq!(end2 - t0, Duration::from_secs(2));
        // 8 MiB more: the writer waits until 4 MiB are left.
        let (end3, ret3) = l.schedule(t0 + Duration::from_millis(600), 8 << 20);
        assert_eq!(end3 - t0, Duration::from_secs(10));
        assert_eq!(ret3 - t0, Duration::from_secs(6));
        // Idle past the end: the link waited for data.
        let late = t0 + Duration::from_secs(11);
        let (end4, _) = l.schedule(late, 1 << 19);
        assert_eq!(end4 - late, Duration::from_millis(500));
    }
}
