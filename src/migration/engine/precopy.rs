//! When pre-copy ends, and whether the device may stop: the engine's switchover decision.
//!
//! After every pre-copy round the engine asks [`Switchover::after_round`] whether to go on.
//! Pre-copy ends when the pending bytes fall to the policy's threshold
//! ([`PrecopyEnd::Converged`]), when the predicted downtime fits the policy's limit
//! ([`PrecopyEnd::WithinDowntime`]), when the rounds stop converging
//! ([`PrecopyEnd::NotConverging`]: a round does not leave at least a sixteenth less pending
//! than it began with, i.e. the device dirties about as fast as it is drained, or than the
//! round before left), at
//! the round limit, or at the pre-copy size bound. A busy device therefore goes to STOP_COPY
//! instead of pre-copying in vain.
//!
//! The downtime prediction is the bytes still to move once stopped (the device's fresh
//! STOP_COPY size estimate, as QEMU uses; the pending bytes when it gives none) divided by
//! the drain rate measured over the pre-copy rounds (bytes read per second of reading, with
//! the sink's back-pressure in it). With [`PrecopyPolicy::max_downtime`] set, a prediction
//! above the limit once pre-copy ended refuses to stop the device
//! ([`MigrationError::DowntimeLimit`]: the source stays RUNNING) unless
//! [`PrecopyPolicy::force_switchover`] is set.

use super::report::RoundStats;
use super::PrecopyPolicy;
use crate::migration::{MigrationError, Result};
use serde::{Deserialize, Serialize};

/// Predicted downtime, seconds: `remaining_bytes / drain_bytes_per_s`, the bytes still to
/// move once the device stops over the rate the path drained them at while it ran; `None`
/// when the rate is not a positive, finite number. Fixed costs (the state transitions, the
/// destination loading the state) come on top and are not in it.
///
/// ```
/// use vfio_harness::migration::engine::predicted_downtime;
///
/// assert_eq!(predicted_downtime(1 << 30, (1u64 << 30) as f64), Some(1.0));
/// assert_eq!(predicted_downtime(1 << 30, 0.0), None);
/// ```
pub fn predicted_downtime(remaining_bytes: u64, drain_bytes_per_s: f64) -> Option<f64> {
    (drain_bytes_per_s.is_finite() && drain_bytes_per_s > 0.0)
        .then(|| remaining_bytes as f64 / drain_bytes_per_s)
}

/// The drain rate measured over pre-copy rounds, bytes per second: the bytes they read over
/// the time they took (with the sink's back-pressure in it), as the engine's switchover
/// decision measures it; `None` without bytes or time.
///
/// ```
/// use vfio_harness::migration::engine::{drain_rate, RoundStats};
/// use vfio_harness::migration::Pending;
///
/// let round = |bytes, seconds| RoundStats {
///     round: 1,
///     pending_before: Pending::default(),
///     bytes,
///     pending_after: Pending::default(),
///     seconds,
/// };
/// assert_eq!(drain_rate(&[round(100, 1.0), round(50, 0.5)]), Some(100.0));
/// assert_eq!(drain_rate(&[]), None);
/// ```
pub fn drain_rate(rounds: &[RoundStats]) -> Option<f64> {
    rate(
        rounds.iter().map(|r| r.bytes).sum(),
        rounds.iter().map(|r| r.seconds).sum(),
    )
}

/// `bytes / seconds` when both are positive.
fn rate(bytes: u64, seconds: f64) -> Option<f64> {
    (bytes > 0 && seconds > 0.0).then(|| bytes as f64 / seconds)
}

/// Why pre-copy ended (in [`SaveReport`](super::SaveReport) and
/// [`MigrateReport`](super::MigrateReport)).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrecopyEnd {
    /// No pre-copy: the policy asked for no rounds, or the device has no PRE_COPY.
    #[default]
    NotRun,
    /// The bytes pending after a round were at or below the policy's threshold.
    Converged,
    /// The predicted downtime fitted [`PrecopyPolicy::max_downtime`].
    WithinDowntime,
    /// A round did not leave at least a sixteenth less pending than it began with, or than
    /// the round before it left: the device dirties state about as fast as it is drained.
    NotConverging,
    /// [`PrecopyPolicy::max_rounds`] rounds ran.
    RoundLimit,
    /// Pre-copy reached its size bound (four times the device's estimate and 64 MiB more).
    Capped,
}

impl PrecopyEnd {
    /// The name used in reports (`not-run`, `converged`, `within-downtime`,
    /// `not-converging`, `round-limit`, `capped`).
    pub fn as_str(self) -> &'static str {
        match self {
            PrecopyEnd::NotRun => "not-run",
            PrecopyEnd::Converged => "converged",
            PrecopyEnd::WithinDowntime => "within-downtime",
            PrecopyEnd::NotConverging => "not-converging",
            PrecopyEnd::RoundLimit => "round-limit",
            PrecopyEnd::Capped => "capped",
        }
    }
}

impl std::fmt::Display for PrecopyEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A round converges when it leaves at least 1/`SHRINK_DIVISOR` less pending than it began
/// with and than the round before left.
const SHRINK_DIVISOR: u64 = 16;

/// The decision state of one source's pre-copy (crate-internal: the engine's).
#[derive(Clone, Debug)]
pub(super) struct Switchover {
    policy: PrecopyPolicy,
    max_rounds: u32,
    read_bytes: u64,
    read_seconds: f64,
    last_after: Option<u64>,
    /// The latest prediction, seconds.
    pub(super) predicted: Option<f64>,
}

impl Switchover {
    pub(super) fn new(policy: PrecopyPolicy, max_rounds: u32) -> Self {
        Switchover {
            policy,
            max_rounds,
            read_bytes: 0,
            read_seconds: 0.0,
            last_after: None,
            predicted: None,
        }
    }

    /// The drain rate measured so far (bytes per second), when a round read something.
    pub(super) fn drain_rate(&self) -> Option<f64> {
        rate(self.read_bytes, self.read_seconds)
    }

    /// Records `round` (the `rounds`-th) with `remaining` bytes still to move once stopped
    /// and whether the size bound was reached; returns why pre-copy ends, or `None` to run
    /// another round.
    pub(super) fn after_round(
        &mut self,
        round: &RoundStats,
        rounds: u32,
        remaining: u64,
        capped: bool,
    ) -> Option<PrecopyEnd> {
        self.read_bytes += round.bytes;
        self.read_seconds += round.seconds;
        self.predicted = self
            .drain_rate()
            .and_then(|r| predicted_downtime(remaining, r));
        let before = round.pending_before.total();
        let after = round.pending_after.total();
        // Converging means each round leaves at least a sixteenth less than it began with
        // and than the round before left: a device with all its pages dirty again shrinks
        // its pending bytes by a page or two per round (seen on vhgpu: 0.25 %, then 0.01 %).
        let clearly_below = |x: u64, y: u64| x < y - y / SHRINK_DIVISOR;
        let shrank =
            clearly_below(after, before) && self.last_after.is_none_or(|l| clearly_below(after, l));
        self.last_after = Some(after);
        if after <= self.policy.dirty_threshold {
            return Some(PrecopyEnd::Converged);
        }
        if let (Some(limit), Some(p)) = (self.policy.max_downtime, self.predicted) {
            if p <= limit.as_secs_f64() {
                return Some(PrecopyEnd::WithinDowntime);
            }
        }
        if !shrank {
            return Some(PrecopyEnd::NotConverging);
        }
        if rounds >= self.max_rounds {
            return Some(PrecopyEnd::RoundLimit);
        }
        capped.then_some(PrecopyEnd::Capped)
    }

    /// Before the device stops: with a downtime limit, the prediction (for `remaining`
    /// bytes, at the measured drain rate) must fit it unless the policy forces the
    /// switchover. Returns the prediction, in seconds, when one could be made.
    ///
    /// # Errors
    ///
    /// [`MigrationError::DowntimeLimit`]: the prediction exceeds the limit, or (no
    /// pre-copy round measured a drain rate) none could be made.
    pub(super) fn check(
        &mut self,
        device: &str,
        rounds: u32,
        remaining: u64,
    ) -> Result<Option<f64>> {
        if let Some(p) = self
            .drain_rate()
            .and_then(|r| predicted_downtime(remaining, r))
        {
            self.predicted = Some(p);
        }
        let Some(limit) = self.policy.max_downtime else {
            return Ok(self.predicted);
        };
        let fits = self.predicted.is_some_and(|p| p <= limit.as_secs_f64());
        if fits || self.policy.force_switchover {
            return Ok(self.predicted);
        }
        Err(MigrationError::DowntimeLimit {
            device: device.to_string(),
            predicted_seconds: self.predicted,
            limit_seconds: limit.as_secs_f64(),
            remaining_bytes: remaining,
            rounds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Pending;
    use std::time::Duration;

    fn round(before: u64, bytes: u64, after: u64, seconds: f64) -> RoundStats {
        RoundStats {
            round: 1,
            pending_before: Pending {
                initial_bytes: before,
                dirty_bytes: 0,
            },
            bytes,
            pending_after: Pending {
                initial_bytes: 0,
                dirty_bytes: after,
            },
            seconds,
        }
    }

    fn policy(max_rounds: u32, limit_ms: Option<u64>, force: bool) -> PrecopyPolicy {
        PrecopyPolicy {
            max_rounds,
            dirty_threshold: 100,
            max_downtime: limit_ms.map(Duration::from_millis),
            force_switchover: force,
        }
    }

    #[test]
    fn shrinking_rounds_go_on_until_the_threshold() {
        let mut s = Switchover::new(policy(8, None, false), 8);
        assert_eq!(
            s.after_round(&round(1000, 1000, 400, 1.0), 1, 400, false),
            None
        );
        assert_eq!(
            s.after_round(&round(400, 400, 150, 1.0), 2, 150, false),
            None
        );
        assert_eq!(
            s.after_round(&round(150, 150, 50, 1.0), 3, 50, false),
            Some(PrecopyEnd::Converged)
        );
    }

    #[test]
    fn a_device_dirtying_as_fast_as_it_drains_stops_pre_copying() {
        // The round read 1000 bytes and 1000 were dirtied meanwhile.
        let mut s = Switchover::new(policy(8, None, false), 8);
        assert_eq!(
            s.after_round(&round(1000, 1000, 1000, 1.0), 1, 1000, false),
            Some(PrecopyEnd::NotConverging)
        );
        // Shrinking, but by less than a sixteenth (a device with every page dirty again).
        let mut s = Switchover::new(policy(8, None, false), 8);
        assert_eq!(
            s.after_round(&round(1000, 1000, 990, 1.0), 1, 990, false),
            Some(PrecopyEnd::NotConverging)
        );
        // Shrinking within rounds, but the second round left more than the first.
        let mut s = Switchover::new(policy(8, None, false), 8);
        assert_eq!(
            s.after_round(&round(1000, 1000, 300, 1.0), 1, 300, false),
            None
        );
        assert_eq!(
            s.after_round(&round(400, 400, 350, 1.0), 2, 350, false),
            Some(PrecopyEnd::NotConverging)
        );
    }

    #[test]
    fn the_round_limit_and_the_bound_end_pre_copy() {
        let mut s = Switchover::new(policy(1, None, false), 1);
        assert_eq!(
            s.after_round(&round(1000, 1000, 400, 1.0), 1, 400, false),
            Some(PrecopyEnd::RoundLimit)
        );
        let mut s = Switchover::new(policy(8, None, false), 8);
        assert_eq!(
            s.after_round(&round(1000, 1000, 400, 1.0), 1, 400, true),
            Some(PrecopyEnd::Capped)
        );
    }

    #[test]
    fn the_prediction_is_remaining_over_the_measured_drain_rate() {
        // 1000 bytes in 2 s: 500 B/s; 250 bytes remain: 0.5 s.
        let mut s = Switchover::new(policy(8, Some(600), false), 8);
        assert_eq!(
            s.after_round(&round(1000, 1000, 250, 2.0), 1, 250, false),
            Some(PrecopyEnd::WithinDowntime)
        );
        assert_eq!(s.predicted, Some(0.5));
        assert_eq!(s.check("d", 1, 250).unwrap(), Some(0.5));
    }

    #[test]
    fn a_prediction_over_the_limit_refuses_unless_forced() {
        let mut s = Switchover::new(policy(1, Some(100), false), 1);
        assert_eq!(
            s.after_round(&round(1000, 1000, 900, 1.0), 1, 900, false),
            Some(PrecopyEnd::RoundLimit)
        );
        match s.check("dev0", 1, 900) {
            Err(MigrationError::DowntimeLimit {
                predicted_seconds,
                limit_seconds,
                remaining_bytes,
                ..
            }) => {
                assert_eq!(predicted_seconds, Some(0.9));
                assert_eq!(limit_seconds, 0.1);
                assert_eq!(remaining_bytes, 900);
            }
            other => panic!("{other:?}"),
        }
        let mut s = Switchover::new(policy(1, Some(100), true), 1);
        s.after_round(&round(1000, 1000, 900, 1.0), 1, 900, false);
        assert_eq!(s.check("dev0", 1, 900).unwrap(), Some(0.9));
    }

    #[test]
    fn without_a_measured_rate_a_limit_cannot_be_met() {
        let mut s = Switchover::new(policy(0, Some(100), false), 0);
        assert!(matches!(
            s.check("dev0", 0, 900),
            Err(MigrationError::DowntimeLimit {
                predicted_seconds: None,
                ..
            })
        ));
        let mut s = Switchover::new(policy(0, None, false), 0);
        assert_eq!(s.check("dev0", 0, 900).unwrap(), None);
    }
}
