//! Migration v2 values as the uAPI defines them (`enum vfio_device_mig_state`,
//! `VFIO_MIGRATION_*` flags). The state machine itself lives in [`crate::device::fsm`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::uapi;

/// A migration v2 device state (`enum vfio_device_mig_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(u32)]
pub enum MigState {
    /// The device failed and must be reset.
    Error = uapi::MIG_STATE_ERROR,
    /// Stopped: no DMA, no interrupts, state frozen.
    Stop = uapi::MIG_STATE_STOP,
    /// Running normally.
    Running = uapi::MIG_STATE_RUNNING,
    /// Stopped, streaming its complete state out.
    StopCopy = uapi::MIG_STATE_STOP_COPY,
    /// Stopped, accepting a state stream in.
    Resuming = uapi::MIG_STATE_RESUMING,
    /// Running but not initiating peer-to-peer DMA.
    RunningP2p = uapi::MIG_STATE_RUNNING_P2P,
    /// Running while streaming an initial (pre-copy) state out.
    PreCopy = uapi::MIG_STATE_PRE_COPY,
    /// PRE_COPY without peer-to-peer DMA.
    PreCopyP2p = uapi::MIG_STATE_PRE_COPY_P2P,
}

impl MigState {
    /// Every state, in uAPI order.
    pub const ALL: [MigState; 8] = [
        MigState::Error,
        MigState::Stop,
        MigState::Running,
        MigState::StopCopy,
        MigState::Resuming,
        MigState::RunningP2p,
        MigState::PreCopy,
        MigState::PreCopyP2p,
    ];

    /// The uAPI value.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// Decodes a uAPI value.
    pub fn from_raw(v: u32) -> Option<MigState> {
        MigState::ALL.into_iter().find(|s| s.raw() == v)
    }

    /// The uAPI name without prefix (`STOP_COPY`).
    pub fn as_str(self) -> &'static str {
        match self {
            MigState::Error => "ERROR",
            MigState::Stop => "STOP",
            MigState::Running => "RUNNING",
            MigState::StopCopy => "STOP_COPY",
            MigState::Resuming => "RESUMING",
            MigState::RunningP2p => "RUNNING_P2P",
            MigState::PreCopy => "PRE_COPY",
            MigState::PreCopyP2p => "PRE_COPY_P2P",
        }
    }

    /// States in which a data stream is open (reads for saving, writes for RESUMING).
    pub fn is_streaming(self) -> bool {
        matches!(
            self,
            MigState::StopCopy | MigState::Resuming | MigState::PreCopy | MigState::PreCopyP2p
        )
    }
}

impl fmt::Display for MigState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MigState {
    type Err = String;
    /// Accepts `STOP_COPY`, `stop-copy`, `stop_copy`, `StopCopy` and the numeric value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(v) = s.parse::<u32>() {
            return MigState::from_raw(v).ok_or_else(|| format!("no migration state {v}"));
        }
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_uppercase();
        MigState::ALL
            .into_iter()
            .find(|st| st.as_str().replace('_', "") == norm)
            .ok_or_else(|| {
                format!(
                    "unknown migration state {s:?} (one of: {})",
                    MigState::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// Migration v2 capability flags (`VFIO_MIGRATION_STOP_COPY | P2P | PRE_COPY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MigFlags(pub u64);

impl MigFlags {
    /// `VFIO_MIGRATION_STOP_COPY`: STOP, STOP_COPY and RESUMING exist (mandatory).
    pub const STOP_COPY: u64 = uapi::MIGRATION_STOP_COPY;
    /// `VFIO_MIGRATION_P2P`: RUNNING_P2P exists.
    pub const P2P: u64 = uapi::MIGRATION_P2P;
    /// `VFIO_MIGRATION_PRE_COPY`: PRE_COPY (and PRE_COPY_P2P with P2P) exist.
    pub const PRE_COPY: u64 = uapi::MIGRATION_PRE_COPY;

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u64) -> bool {
        self.0 & bits == bits
    }

    /// Names of the set flags (unknown bits as hex).
    pub fn names(self) -> Vec<String> {
        let mut v = Vec::new();
        for (bit, name) in [
            (Self::STOP_COPY, "STOP_COPY"),
            (Self::P2P, "P2P"),
            (Self::PRE_COPY, "PRE_COPY"),
        ] {
            if self.0 & bit != 0 {
                v.push(name.to_string());
            }
        }
        let rest = self.0 & !(Self::STOP_COPY | Self::P2P | Self::PRE_COPY);
        if rest != 0 {
            v.push(format!("{rest:#x}"));
        }
        v
    }

    /// Parses `STOP_COPY|P2P|PRE_COPY` (also `+`, `,` separators, any case, `-` for `_`).
    pub fn parse(s: &str) -> Result<MigFlags, String> {
        let mut v = 0;
        for part in s
            .split(['|', '+', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            v |= match part.to_ascii_uppercase().replace('-', "_").as_str() {
                "STOP_COPY" => Self::STOP_COPY,
                "P2P" => Self::P2P,
                "PRE_COPY" => Self::PRE_COPY,
                _ => {
                    return Err(format!(
                        "unknown migration flag {part:?} (STOP_COPY, P2P, PRE_COPY)"
                    ))
                }
            };
        }
        Ok(MigFlags(v))
    }
}

impl fmt::Display for MigFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.names();
        if n.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&n.join("|"))
        }
    }
}

/// `struct vfio_precopy_info`: what is left to send in PRE_COPY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrecopyInfo {
    /// Bytes of the initial state not yet read.
    pub initial_bytes: u64,
    /// Bytes dirtied since and not yet read.
    pub dirty_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in MigState::ALL {
            assert_eq!(MigState::from_raw(s.raw()), Some(s));
            assert_eq!(s.as_str().parse::<MigState>().unwrap(), s);
        }
        assert_eq!("stop-copy".parse::<MigState>().unwrap(), MigState::StopCopy);
        assert_eq!(
            "precopy_p2p".parse::<MigState>().unwrap(),
            MigState::PreCopyP2p
        );
        assert!(MigState::from_raw(8).is_none());
        assert!("flying".parse::<MigState>().is_err());
    }

    #[test]
    fn flags_parse_and_print() {
        let f = MigFlags::parse("stop-copy|P2P").unwrap();
        assert_eq!(f.0, 3);
        assert_eq!(f.to_string(), "STOP_COPY|P2P");
        assert_eq!(
            MigFlags(7 | 16).names(),
            ["STOP_COPY", "P2P", "PRE_COPY", "0x10"]
        );
        assert!(MigFlags::parse("warp").is_err());
    }
}
