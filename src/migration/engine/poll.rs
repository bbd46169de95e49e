//! Polling before sleeping: a thread about to wait for something that usually comes soon
//! tries again for a while first, since waking a sleeping thread costs the waker a wake-up
//! (in a VM an interrupt to the sleeper's vCPU) and the sleeper its rescheduling. Used by
//! the device's gate of the two reading threads ([`turns`](super::turns)) and by
//! [`Cancellable`](super::Cancellable)'s reads and writes of a pipe or socket when asked
//! ([`Cancellable::poll_first`](super::Cancellable::poll_first)); how long is
//! [`Options::max_poll`](super::Options::max_poll).

use std::time::{Duration, Instant};

/// How long a poll spins on the CPU (`spin_loop`) between its tries; past it, a poll yields
/// the CPU (`sched_yield`) between tries, so another thread that can run on this CPU does.
pub(super) const MAX_SPIN: Duration = Duration::from_micros(200);

/// How [`poll`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Polled<T> {
    /// A try answered.
    Answered(T),
    /// The budget passed first.
    Unanswered,
    /// `stop` said so first.
    Stopped,
}

/// Calls `attempt` until it answers (`Some`), `budget` has passed since the call, or
/// `stop` returns `true` (asked before every try); spins between tries for the first
/// [`MAX_SPIN`], yields the CPU between them after that. A zero budget tries nothing.
pub(super) fn poll<T>(
    budget: Duration,
    mut stop: impl FnMut() -> bool,
    mut attempt: impl FnMut() -> Option<T>,
) -> Polled<T> {
    let t0 = Instant::now();
    loop {
        let waited = t0.elapsed();
        if waited >= budget {
            return Polled::Unanswered;
        }
        if waited < MAX_SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        if stop() {
            return Polled::Stopped;
        }
        if let Some(v) = attempt() {
            return Polled::Answered(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_poll_ends_at_the_first_answer_and_asks_stop_before_each_try() {
        let tries = Cell::new(0);
        let stops = Cell::new(0);
        let got = poll(
            Duration::from_secs(60),
            || {
                stops.set(stops.get() + 1);
                false
            },
            || {
                tries.set(tries.get() + 1);
                (tries.get() == 3).then_some("third")
            },
        );
        assert_eq!(got, Polled::Answered("third"));
        assert_eq!((tries.get(), stops.get()), (3, 3));
    }

    #[test]
    fn stop_ends_a_poll_before_its_next_try() {
        let tries = Cell::new(0);
        let got = poll(
            Duration::from_secs(60),
            || tries.get() == 2,
            || {
                tries.set(tries.get() + 1);
                None::<()>
            },
        );
        assert_eq!(got, Polled::Stopped);
        assert_eq!(tries.get(), 2);
    }

    #[test]
    fn a_zero_budget_tries_nothing_and_an_unanswered_poll_ends_at_its_budget() {
        let tries = Cell::new(0);
        let never = || {
            tries.set(tries.get() + 1);
            None::<()>
        };
        assert_eq!(poll(Duration::ZERO, || false, never), Polled::Unanswered);
        assert_eq!(tries.get(), 0);
        let budget = Duration::from_millis(1);
        let t0 = Instant::now();
        assert_eq!(poll(budget, || false, || None::<()>), Polled::Unanswered);
        assert!(t0.elapsed() >= budget);
    }
}
