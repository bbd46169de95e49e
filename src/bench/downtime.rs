//! Downtime prediction: how long a device will be stopped, from what is left to move and how
//! fast the path moves it.
//!
//! A live migration pre-copies while the source runs; each round sends what was pending when
//! it started, and the source dirties more meanwhile. When it stops, everything still pending
//! has to cross while nothing runs, so
//!
//! ```text
//! downtime ≈ remaining bytes / drain rate
//! ```
//!
//! with the drain rate measured while pre-copying (the same path moved the same kind of data
//! a moment before). Fixed costs (the state transitions, the destination loading the state)
//! come on top and are not modelled; on the simulator they are microseconds.
//!
//! These are plain functions so that a transport (a migration over a network link, which
//! decides when to stop pre-copying) can use the same prediction: they depend on nothing but
//! numbers and [`RoundStats`].

use crate::migration::engine::RoundStats;

/// Predicted downtime, seconds: `remaining_bytes / drain_bytes_per_s`; `None` when the drain
/// rate is not a positive, finite number.
pub fn predicted_downtime(remaining_bytes: u64, drain_bytes_per_s: f64) -> Option<f64> {
    (drain_bytes_per_s.is_finite() && drain_bytes_per_s > 0.0)
        .then(|| remaining_bytes as f64 / drain_bytes_per_s)
}

/// The drain rate measured over pre-copy rounds: bytes read over the rounds' time; `None`
/// without rounds or time.
pub fn drain_rate(rounds: &[RoundStats]) -> Option<f64> {
    let bytes: u64 = rounds.iter().map(|r| r.bytes).sum();
    let secs: f64 = rounds.iter().map(|r| r.seconds).sum();
    (secs > 0.0 && bytes > 0).then(|| bytes as f64 / secs)
}

/// What is pending when the source stops after `rounds` pre-copy rounds: the last round's
/// `pending_after` (initial + dirty), or `stop_copy_estimate` without rounds.
pub fn remaining_at_stop(rounds: &[RoundStats], stop_copy_estimate: u64) -> u64 {
    rounds
        .last()
        .map(|r| r.pending_after.total())
        .unwrap_or(stop_copy_estimate)
}

/// The closed-form model: bytes pending after `rounds` pre-copy rounds of a `state`-byte
/// device dirtying `dirty` bytes per second over a `link` bytes-per-second path. Round 1
/// sends the state (taking `state / link`); each later round sends what was dirtied during
/// the previous one, so the pending bytes are multiplied by `dirty / link` per round, never
/// above the state. With no rounds everything is pending.
pub fn remaining_after_rounds(state: u64, link: f64, dirty: f64, rounds: u32) -> u64 {
    if rounds == 0 || link.is_nan() || link <= 0.0 {
        return state;
    }
    let r = (dirty.max(0.0) / link).max(0.0);
    let mut pending = state as f64;
    for _ in 0..rounds {
        // This round sends `pending`, taking pending / link; the device dirties r times that.
        pending = (pending * r).min(state as f64);
    }
    pending.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Pending;

    #[test]
    fn prediction_is_remaining_over_rate() {
        assert_eq!(predicted_downtime(1 << 30, (1u64 << 30) as f64), Some(1.0));
        assert_eq!(predicted_downtime(0, 5.0), Some(0.0));
        assert_eq!(predicted_downtime(10, 0.0), None);
        assert_eq!(predicted_downtime(10, f64::NAN), None);
    }

    #[test]
    fn model_halves_per_round_at_half_the_link() {
        let s = 256 << 20;
        assert_eq!(remaining_after_rounds(s, 1e9, 0.5e9, 0), s);
        assert_eq!(remaining_after_rounds(s, 1e9, 0.5e9, 1), s / 2);
        assert_eq!(remaining_after_rounds(s, 1e9, 0.5e9, 3), s / 8);
        assert_eq!(remaining_after_rounds(s, 1e9, 0.0, 2), 0);
        // Dirtying faster than the link never converges, and stays capped at the state.
        assert_eq!(remaining_after_rounds(s, 1e9, 2e9, 5), s);
    }

    #[test]
    fn drain_and_remaining_from_rounds() {
        let round = |bytes, secs: f64, after: u64| RoundStats {
            round: 1,
            pending_before: Pending::default(),
            bytes,
            pending_after: Pending {
                initial_bytes: 0,
                dirty_bytes: after,
            },
            seconds: secs,
        };
        let rs = [round(100, 1.0, 50), round(50, 0.5, 25)];
        assert_eq!(drain_rate(&rs), Some(100.0));
        assert_eq!(remaining_at_stop(&rs, 999), 25);
        assert_eq!(remaining_at_stop(&[], 999), 999);
        assert_eq!(drain_rate(&[]), None);
    }
}
