//! A device's bandwidth cap and per-call latency (`rate=SIZE/s`, `latency=DURATION`): each
//! read or write of the data stream takes at least `latency + bytes / rate`, and back-to-back
//! calls never move more than `rate` bytes per second.
//!
//! Deadlines are absolute: a call is due `latency + bytes / rate` after the previous call's
//! deadline (or after its own start, when the caller was away longer), and the caller sleeps
//! until then, outside the device lock. A sleep that overshoots (the timer slack, a busy
//! machine) is credited to the next call as long as the caller comes straight back (up to
//! [`CREDIT`]), so the long-run rate is the configured one and not a few percent below it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far behind schedule a device may be and still catch up on the next calls.
pub(crate) const CREDIT: Duration = Duration::from_millis(2);

/// The pacing state of one device.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Option<u64>,
    latency: Duration,
    /// Deadline of the previous call.
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `rate` bytes per second (none: unlimited) and `latency` per call.
    pub(crate) fn new(rate: Option<u64>, latency: Duration) -> Pacer {
        Pacer {
            rate: rate.filter(|&r| r > 0),
            latency,
            next: Mutex::new(None),
        }
    }

    /// Whether the device is paced at all.
    pub(crate) fn active(&self) -> bool {
        self.rate.is_some() || !self.latency.is_zero()
    }

    /// The deadline of a call of `bytes` that started at `start`; records it.
    pub(crate) fn deadline(&self, start: Instant, bytes: usize) -> Instant {
        let cost = self.latency
            + self
                .rate
                .map(|r| Duration::from_secs_f64(bytes as f64 / r as f64))
                .unwrap_or_default();
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let base = match *next {
            // Came straight back (or is ahead): continue the schedule, crediting an overshoot.
            Some(prev) if prev + CREDIT >= start => prev,
            _ => start,
        };
        let due = base + cost;
        *next = Some(due);
        due
    }

    /// Sleeps until the deadline of a call of `bytes` that started at `start`.
    pub(crate) fn wait(&self, start: Instant, bytes: usize) {
        if !self.active() {
            return;
        }
        let due = self.deadline(start, bytes);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }

    /// Forgets the schedule (a new transfer starts from now).
    pub(crate) fn reset(&self) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_rate_and_latency() {
        let p = Pacer::new(Some(1 << 20), Duration::from_micros(100));
        assert!(p.active());
        let t0 = Instant::now();
        // 1 MiB at 1 MiB/s: one second plus the latency.
        let d1 = p.deadline(t0, 1 << 20);
        assert_eq!(d1 - t0, Duration::from_secs(1) + Duration::from_micros(100));
        // Back to back: the next one continues from the previous deadline.
        let d2 = p.deadline(t0 + Duration::from_millis(1), 1 << 19);
        assert_eq!(
            d2 - d1,
            Duration::from_millis(500) + Duration::from_micros(100)
        );
        // A caller that was away long starts from its own start.
        let late = d2 + Duration::from_secs(5);
        let d3 = p.deadline(late, 0);
        assert_eq!(d3 - late, Duration::from_micros(100));
        // A small overshoot is credited.
        let d4 = p.deadline(d3 + Duration::from_micros(500), 1 << 10);
        assert_eq!(
            d4 - d3,
            Duration::from_micros(100) + Duration::from_secs_f64(1.0 / 1024.0)
        );
        p.reset();
        let t = Instant::now();
        assert_eq!(p.deadline(t, 0) - t, Duration::from_micros(100));
        assert!(!Pacer::new(None, Duration::ZERO).active());
    }
}
