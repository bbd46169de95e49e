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
//! The drain rate and the prediction itself are the engine's
//! ([`drain_rate`](crate::migration::engine::drain_rate),
//! [`predicted_downtime`](crate::migration::engine::predicted_downtime)), which its switchover
//! decision uses; the bench adds what was pending when the source stopped and a closed-form
//! model of pre-copy from the rates alone.

use crate::migration::engine::RoundStats;

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
    fn remaining_is_what_the_last_round_left() {
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
        assert_eq!(remaining_at_stop(&rs, 999), 25);
        assert_eq!(remaining_at_stop(&[], 999), 999);
    }
}
