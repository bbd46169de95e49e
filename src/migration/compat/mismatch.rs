//! Why a source's state cannot go into a target, as a typed list of mismatches.

use super::RuleResult;
use crate::migration::Protocol;

/// One reason a destination cannot take a source's state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mismatch {
    /// Different `device_api`.
    DeviceApi {
        /// The source's.
        source: String,
        /// The target's.
        target: String,
    },
    /// Different mdev types (`None`: not a mediated device).
    MdevType {
        /// The source's.
        source: Option<String>,
        /// The target's.
        target: Option<String>,
    },
    /// Different PCI vendor:device IDs.
    PciId {
        /// The source's.
        source: String,
        /// The target's.
        target: String,
    },
    /// Different migration protocols.
    Protocol {
        /// The source's.
        source: Protocol,
        /// The target's.
        target: Protocol,
    },
    /// A rule of the pre-check ([`check`](super::check)) failed.
    Rule(RuleResult),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn opt(s: &Option<String>) -> String {
            match s {
                Some(v) => format!("{v:?}"),
                None => "none".into(),
            }
        }
        match self {
            Mismatch::DeviceApi { source, target } => {
                write!(f, "device_api: source {source:?}, target {target:?}")
            }
            Mismatch::MdevType { source, target } => {
                write!(
                    f,
                    "mdev type: source {}, target {}",
                    opt(source),
                    opt(target)
                )
            }
            Mismatch::PciId { source, target } => {
                write!(f, "PCI ID: source {source:?}, target {target:?}")
            }
            Mismatch::Protocol { source, target } => {
                write!(f, "migration protocol: source {source}, target {target}")
            }
            Mismatch::Rule(r) => write!(f, "{}: {}", r.rule, r.reason),
        }
    }
}

/// Why a source's state cannot go into a target: every mismatch found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Incompatibility {
    /// The source device (the one whose state was saved).
    pub source: String,
    /// The target device.
    pub target: String,
    /// Every mismatch, in check order (never empty).
    pub mismatches: Vec<Mismatch>,
}

impl std::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the state of {} cannot be loaded into {}: ",
            self.source, self.target
        )?;
        for (i, m) in self.mismatches.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}
