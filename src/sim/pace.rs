//! A device's bandwidth cap and per-call latency (`rate=SIZE/s`, `latency=DURATION`): each
//! read or write of the data stream takes at least `latency + bytes / rate`, and back-to-back
//! calls never move more than `rate` bytes per second.
//!
//! Deadlines are absolute: a call is due `latency + bytes / rate` after the previous call's
//! deadline, or after its own start when the caller came back later than that, and the
//! caller sleeps until then, outside the device lock. Only what a sleep overshot its deadline
//! by (the timer slack, a busy machine; at most [`CREDIT`]) is credited to the next call, so
//! the long-run rate is the configured one and not a few percent below it, while the time a
//! caller spends elsewhere between calls (writing what it read, in a serial loop) is never
//! made up for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most oversleeping credited to the next call.
pub(crate) const CREDIT: Duration = Duration::from_millis(2);

/// The longest a call's bytes take at the device's rate: a call asking for more moves only
/// that much (as a real device's read or write may), so that however slow the rate, the
/// caller comes back between calls (where the engine checks for cancellation) at least this
/// often, plus the latency.
pub(crate) const MAX_CALL: Duration = Duration::from_millis(100);

/// The pacing state of one device.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Option<u64>,
    latency: Duration,
    /// Deadline of the previous call, and how much its sleep overshot it.
    next: Mutex<Option<(Instant, Duration)>>,
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

    /// The most bytes one call moves: what the rate carries in [`MAX_CALL`], at least one
    /// (no limit without a rate).
    pub(crate) fn call_limit(&self) -> usize {
        match self.rate {
            Some(r) => usize::try_from((r as f64 * MAX_CALL.as_secs_f64()) as u64)
                .unwrap_or(usize::MAX)
                .max(1),
            None => usize::MAX,
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
            // Continue the schedule; the previous sleep's overshoot is made up for, the
            // caller's own time between calls is not.
            Some((prev, overshoot)) => prev.max(start.checked_sub(overshoot).unwrap_or(start)),
            None => start,
        };
        let due = base + cost;
        *next = Some((due, Duration::ZERO));
        due
    }

    /// Records that the sleep for `due` ended at `woke`.
    fn woke(&self, due: Instant, woke: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((d, o)) = next.as_mut() {
            if *d == due {
                *o = woke.saturating_duration_since(due).min(CREDIT);
            }
        }
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
            self.woke(due, Instant::now());
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
        let ms = Duration::from_millis;
        let p = Pacer::new(Some(1 << 20), Duration::from_micros(100));
        assert!(p.active());
        let t0 = Instant::now();
        // 1 MiB at 1 MiB/s: one second plus the latency.
        let d1 = p.deadline(t0, 1 << 20);
        assert_eq!(d1 - t0, Duration::from_secs(1) + Duration::from_micros(100));
        // Ahead of schedule: the next one continues from the previous deadline.
        let d2 = p.deadline(t0 + ms(1), 1 << 19);
        assert_eq!(d2 - d1, ms(500) + Duration::from_micros(100));
        // A caller that was away starts from its own start: idle time is not made up for.
        let late = d2 + ms(1);
        let d3 = p.deadline(late, 0);
        assert_eq!(d3 - late, Duration::from_micros(100));
        // An oversleep is: the sleep for d3 woke 500 us late, the caller came straight back.
        p.woke(d3, d3 + Duration::from_micros(500));
        let d4 = p.deadline(d3 + Duration::from_micros(500), 1 << 10);
        assert_eq!(
            d4 - d3,
            Duration::from_micros(100) + Duration::from_secs_f64(1.0 / 1024.0)
        );
        // ...but only the oversleep, capped.
        p.woke(d4, d4 + Duration::from_secs(1));
        let back = d4 + Duration::from_secs(1) + ms(1);
        let d5 = p.deadline(back, 0);
        assert_eq!(d5, back - CREDIT + Duration::from_micros(100));
        p.reset();
        let t = Instant::now();
        assert_eq!(p.deadline(t, 0) - t, Duration::from_micros(100));
        assert!(!Pacer::new(None, Duration::ZERO).active());
    }
}
