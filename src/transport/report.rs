//! What a migration across a link reports: per device, and summed in the shape of the
//! in-process [`MigrateReport`].

use super::frame::AckDevice;
use crate::migration::engine::{MigrateReport, RestoreReport, SaveReport};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One device's leg of a migration across a link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceLeg {
    /// What saving the source reported (bytes, rounds, stop-copy time...).
    pub save: SaveReport,
    /// The destination device, as its acknowledgement named it.
    pub destination: String,
    /// Destination time leaving RESUMING into RUNNING, seconds.
    pub commit_seconds: f64,
    /// From this source leaving RUNNING until the destination's acknowledgement arrived,
    /// seconds (see [`RemoteReport::summary`]).
    pub downtime_seconds: f64,
}

impl DeviceLeg {
    pub(crate) fn new(
        save: SaveReport,
        ack: AckDevice,
        stopped: Option<Instant>,
        acked_at: Instant,
    ) -> DeviceLeg {
        let downtime_seconds = stopped
            .map(|s| acked_at.saturating_duration_since(s).as_secs_f64())
            .unwrap_or(0.0);
        DeviceLeg {
            save,
            destination: ack.device,
            commit_seconds: ack.commit_seconds,
            downtime_seconds,
        }
    }
}

/// The report of [`migrate_to`](super::migrate_to): the summary has the fields of the
/// in-process `migrate` report (`source` and `destination` list every device, comma
/// separated; byte and chunk counts are sums; times are the longest), `devices` has each
/// device's leg.
///
/// As for an in-process migrate, whose devices are open before it starts, the summary's
/// `seconds` (and `throughput_bytes_per_s`) run from the destination's ACCEPT (its devices
/// open, the streams found compatible) to its acknowledgement; the handshake before it is
/// [`handshake_seconds`](Self::handshake_seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteReport {
    /// The summary, as in-process migrate reports it. Downtime is measured from the first
    /// source leaving RUNNING until the destination's acknowledgement that every device runs
    /// the state arrived back. A device leaves RUNNING when a group is released into its P2P
    /// states (every device finished pre-copy), or else at its first STOP_COPY chunk, or its
    /// save's end less its stop-copy time, whichever is earliest.
    #[serde(flatten)]
    pub summary: MigrateReport,
    /// Whether the devices moved as a group through the P2P states (several devices: none
    /// stopped before all were in RUNNING_P2P / PRE_COPY_P2P; downtime then runs from the
    /// moment they all left RUNNING for it).
    pub p2p: bool,
    /// Per device.
    pub devices: Vec<DeviceLeg>,
    /// From sending the HELLO until the destination's ACCEPT arrived, seconds: the
    /// destination checking the streams against its devices and opening them (a large
    /// simulated device allocates and fills its state there).
    #[serde(default)]
    pub handshake_seconds: f64,
}

impl RemoteReport {
    /// The report of legs `legs`: HELLO sent at `t0`, ACCEPT received at `accepted_at`, the
    /// acknowledgement at `acked_at`.
    pub(crate) fn new(
        legs: Vec<DeviceLeg>,
        t0: Instant,
        accepted_at: Instant,
        acked_at: Instant,
        p2p: bool,
    ) -> RemoteReport {
        let seconds = acked_at
            .saturating_duration_since(accepted_at)
            .as_secs_f64();
        let join =
            |f: &dyn Fn(&DeviceLeg) -> String| legs.iter().map(f).collect::<Vec<_>>().join(",");
        let sum = |f: &dyn Fn(&DeviceLeg) -> u64| legs.iter().map(f).sum::<u64>();
        let max = |f: &dyn Fn(&DeviceLeg) -> f64| legs.iter().map(f).fold(0.0, f64::max);
        let bytes = sum(&|l| l.save.bytes);
        let first = &legs[0].save;
        let summary = MigrateReport {
            source: join(&|l| l.save.device.clone()),
            destination: join(&|l| l.destination.clone()),
            protocol: first.protocol,
            bytes,
            precopy_bytes: sum(&|l| l.save.precopy_bytes),
            stopcopy_bytes: sum(&|l| l.save.stopcopy_bytes),
            chunks: sum(&|l| l.save.chunks),
            rounds: legs.iter().map(|l| l.save.rounds).max().unwrap_or(0),
            precopy_rounds: if legs.len() == 1 {
                first.precopy_rounds.clone()
            } else {
                Vec::new()
            },
            converged: legs.iter().all(|l| l.save.converged),
            precopy_end: first.precopy_end,
            predicted_downtime_seconds: legs
                .iter()
                .filter_map(|l| l.save.predicted_downtime_seconds)
                .reduce(f64::max),
            seconds,
            precopy_seconds: max(&|l| l.save.precopy_rounds.iter().map(|r| r.seconds).sum()),
            stop_copy_seconds: max(&|l| l.save.stop_copy_seconds),
            commit_seconds: max(&|l| l.commit_seconds),
            downtime_seconds: max(&|l| l.downtime_seconds),
            throughput_bytes_per_s: if seconds > 0.0 {
                bytes as f64 / seconds
            } else {
                0.0
            },
        };
        RemoteReport {
            summary,
            p2p,
            devices: legs,
            handshake_seconds: accepted_at.saturating_duration_since(t0).as_secs_f64(),
        }
    }
}

/// What [`receive`](super::receive()) reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiveReport {
    /// The source's address, as the listener saw it.
    pub peer: Option<String>,
    /// The source's harness version (from its HELLO).
    pub peer_harness_version: String,
    /// One restore report per device, in device-index order.
    pub devices: Vec<RestoreReport>,
    /// From HELLO until the acknowledgement was sent, seconds.
    pub seconds: f64,
    /// Of which from HELLO until ACCEPT was sent: checking the source's streams and opening
    /// the devices, seconds.
    #[serde(default)]
    pub handshake_seconds: f64,
}
