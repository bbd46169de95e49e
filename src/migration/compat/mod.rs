//! Migration compatibility pre-check: can device A's state go into device B?
//!
//! Upstream never merged a sysfs interface for this (2020 discussions), so the rules that
//! reached rough consensus are implemented here, and a missing attribute makes a rule
//! **unknown**, never ok:
//! 1. `device_api` must be equal.
//! 2. The mdev type must be equal, unless the destination type lists the source type in
//!    `compatible_type` (vendor opt-in). PCI devices compare vendor:device IDs instead.
//! 3. `software_version` (major.minor.bugfix): destination major == source major and
//!    destination minor >= source minor; bugfix only ranks candidates.
//! 4. Every `compatible_<attr>` list of the destination must be a superset of the source's
//!    (a single value means exact match).
//! 5. `dynamic_resources` names per-instance attributes that must be copied from source to
//!    destination before migrating; a value that differs is reported as a failure to fix.
//! 6. `migration_version` (older proposal): the source's opaque string written to the
//!    destination's attribute; a refused write means incompatible.
//!
//! Both devices must also be migratable with the same protocol.

use super::{MigrationDriver, MigrationError, Protocol};
use crate::device::{Device, MigFlags};
use crate::sysfs::{mdev, SysfsRoot};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod mismatch;
pub use mismatch::{Incompatibility, Mismatch};

/// The verdict of one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The rule holds.
    Pass,
    /// The rule is broken: the state must not be migrated.
    Fail,
    /// The rule could not be evaluated (an attribute is missing).
    Unknown,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
        })
    }
}

/// One rule's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    /// Rule name (`device_api`, `mdev_type`, `software_version`, `compatible_<attr>`, ...).
    pub rule: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// The whole check.
#[derive(Clone, Debug, Serialize)]
pub struct CompatReport {
    /// Source device name.
    pub source: String,
    /// Destination device name.
    pub destination: String,
    /// Rule outcomes, in evaluation order.
    pub rules: Vec<RuleResult>,
    /// True when no rule failed (unknown rules do not block; see [`CompatReport::strict`]).
    pub compatible: bool,
}

impl CompatReport {
    /// Compatible even when unknown rules count as failures.
    pub fn strict(&self) -> bool {
        self.rules.iter().all(|r| r.verdict == Verdict::Pass)
    }

    /// `Ok` when compatible, otherwise [`MigrationError::Incompatible`] listing the failed
    /// rules.
    pub fn ensure_compatible(&self) -> Result<(), MigrationError> {
        if self.compatible {
            return Ok(());
        }
        Err(MigrationError::Incompatible(Incompatibility {
            source: self.source.clone(),
            target: self.destination.clone(),
            mismatches: self
                .rules
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .cloned()
                .map(Mismatch::Rule)
                .collect(),
        }))
    }
}

/// What the check knows about one side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompatSide {
    /// Device name, for messages.
    pub name: String,
    /// `device_api`.
    pub device_api: Option<String>,
    /// mdev type id.
    pub mdev_type: Option<String>,
    /// PCI vendor:device.
    pub pci_id: Option<String>,
    /// Attributes of the mdev type directory (software_version, compatible_*, ...).
    pub type_attrs: BTreeMap<String, String>,
    /// Per-instance attributes (dynamic resources such as an aggregation count,
    /// migration_version).
    pub instance_attrs: BTreeMap<String, String>,
    /// The migration protocol and flags, when the device can migrate.
    pub migration: Option<(Protocol, MigFlags)>,
    /// Where the destination's `migration_version` attribute can be written (instance or
    /// type directory), for the write test.
    pub migration_version_path: Option<PathBuf>,
}

impl CompatSide {
    fn attr(&self, name: &str) -> Option<&str> {
        self.instance_attrs
            .get(name)
            .or_else(|| self.type_attrs.get(name))
            .map(|s| s.trim())
    }
}

fn rule(rule: impl Into<String>, verdict: Verdict, reason: impl Into<String>) -> RuleResult {
    RuleResult {
        rule: rule.into(),
        verdict,
        reason: reason.into(),
    }
}

/// Parses `major.minor.bugfix` (a missing bugfix counts as 0).
pub fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.trim().split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let bugfix = match it.next() {
        Some(b) => b.parse().ok()?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    Some((major, minor, bugfix))
}

/// Parses an attribute list: values separated by commas, whitespace or newlines.
pub fn parse_list(s: &str) -> BTreeSet<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// Evaluates every rule that needs no writes. See the module docs.
pub fn evaluate(src: &CompatSide, dst: &CompatSide) -> CompatReport {
    let mut rules = Vec::new();

    // Rule 1: device_api.
    rules.push(match (&src.device_api, &dst.device_api) {
        (Some(a), Some(b)) if a == b => rule("device_api", Verdict::Pass, format!("both {a}")),
        (Some(a), Some(b)) => rule(
            "device_api",
            Verdict::Fail,
            format!("{a} vs {b}: different APIs are unrelated devices"),
        ),
        _ => rule(
            "device_api",
            Verdict::Unknown,
            "device_api missing on one side",
        ),
    });

    // Rule 2: mdev type (or PCI IDs).
    rules.push(match (&src.mdev_type, &dst.mdev_type) {
        (Some(a), Some(b)) if a == b => rule("mdev_type", Verdict::Pass, format!("both {a}")),
        (Some(a), Some(b)) => match dst.type_attrs.get("compatible_type") {
            Some(list) if parse_list(list).contains(a) => rule(
                "mdev_type",
                Verdict::Pass,
                format!("{a} vs {b}: the destination type lists {a} in compatible_type"),
            ),
            _ => rule(
                "mdev_type",
                Verdict::Fail,
                format!(
                    "{a} vs {b}: cross-type migration needs the vendor's compatible_type opt-in"
                ),
            ),
        },
        (None, None) => match (&src.pci_id, &dst.pci_id) {
            (Some(a), Some(b)) if a == b => rule("pci_id", Verdict::Pass, format!("both {a}")),
            (Some(a), Some(b)) => rule("pci_id", Verdict::Fail, format!("{a} vs {b}")),
            _ => rule(
                "mdev_type",
                Verdict::Unknown,
                "neither an mdev type nor PCI IDs on both sides",
            ),
        },
        _ => rule(
            "mdev_type",
            Verdict::Fail,
            "one side is a mediated device and the other is not",
        ),
    });

    // Migration protocol.
    rules.push(match (&src.migration, &dst.migration) {
        (Some((pa, fa)), Some((pb, fb))) if pa == pb => rule(
            "protocol",
            Verdict::Pass,
            format!("both {pa} (source flags {fa}, destination flags {fb})"),
        ),
        (Some((pa, _)), Some((pb, _))) => rule(
            "protocol",
            Verdict::Fail,
            format!("source speaks {pa}, destination {pb}"),
        ),
        (None, _) => rule("protocol", Verdict::Fail, "the source cannot migrate"),
        (_, None) => rule("protocol", Verdict::Fail, "the destination cannot migrate"),
    });

    // Rule 3: software_version.
    rules.push(
        match (src.attr("software_version"), dst.attr("software_version")) {
            (Some(a), Some(b)) => match (parse_version(a), parse_version(b)) {
                (Some(va), Some(vb)) if va.0 != vb.0 => rule(
                    "software_version",
                    Verdict::Fail,
                    format!("major differs: source {a}, destination {b}"),
                ),
                (Some(va), Some(vb)) if vb.1 < va.1 => rule(
                    "software_version",
                    Verdict::Fail,
                    format!("destination minor is older: source {a}, destination {b}"),
                ),
                (Some(_), Some(_)) => rule(
                    "software_version",
                    Verdict::Pass,
                    format!("source {a}, destination {b}"),
                ),
                _ => rule(
                    "software_version",
                    Verdict::Unknown,
                    format!("not major.minor.bugfix: source {a:?}, destination {b:?}"),
                ),
            },
            (None, None) => rule(
                "software_version",
                Verdict::Unknown,
                "not exposed by either side",
            ),
            (None, _) => rule(
                "software_version",
                Verdict::Unknown,
                "not exposed by the source",
            ),
            (_, None) => rule(
                "software_version",
                Verdict::Unknown,
                "not exposed by the destination",
            ),
        },
    );

    // Rule 4: compatible_<attr> supersets (compatible_type is rule 2's).
    let mut names: BTreeSet<&String> = BTreeSet::new();
    for side in [src, dst] {
        names.extend(
            side.type_attrs
                .keys()
                .chain(side.instance_attrs.keys())
                .filter(|k| k.starts_with("compatible_") && *k != "compatible_type"),
        );
    }
    for name in names {
        rules.push(match (src.attr(name), dst.attr(name)) {
            (Some(a), Some(b)) => {
                let (sa, sb) = (parse_list(a), parse_list(b));
                let missing: Vec<&String> = sa.difference(&sb).collect();
                if missing.is_empty() {
                    rule(
                        name.as_str(),
                        Verdict::Pass,
                        format!("destination {{{b}}} covers source {{{a}}}"),
                    )
                } else {
                    rule(
                        name.as_str(),
                        Verdict::Fail,
                        format!(
                            "destination lacks {missing:?} (source {{{a}}}, destination {{{b}}})"
                        ),
                    )
                }
            }
            (None, _) => rule(
                name.as_str(),
                Verdict::Unknown,
                "only the destination exposes it",
            ),
            (_, None) => rule(
                name.as_str(),
                Verdict::Unknown,
                "only the source exposes it",
            ),
        });
    }

    // Rule 5: dynamic_resources to copy.
    if let Some(list) = src
        .attr("dynamic_resources")
        .or(dst.attr("dynamic_resources"))
    {
        for res in parse_list(list) {
            let r = format!("dynamic_resources/{res}");
            rules.push(
                match (src.instance_attrs.get(&res), dst.instance_attrs.get(&res)) {
                    (Some(a), Some(b)) if a.trim() == b.trim() => {
                        rule(r, Verdict::Pass, format!("both {}", a.trim()))
                    }
                    (Some(a), Some(b)) => rule(
                        r,
                        Verdict::Fail,
                        format!(
                            "copy {res}={} to the destination before migrating (it has {})",
                            a.trim(),
                            b.trim()
                        ),
                    ),
                    _ => rule(
                        r,
                        Verdict::Unknown,
                        format!("{res} is not readable on both instances"),
                    ),
                },
            );
        }
    }

    let compatible = rules.iter().all(|r| r.verdict != Verdict::Fail);
    CompatReport {
        source: src.name.clone(),
        destination: dst.name.clone(),
        rules,
        compatible,
    }
}

/// Rule 6: writes the source's `migration_version` into the destination's attribute. Only
/// runs when the source exposes it; a refused write makes the pair incompatible.
pub fn migration_version_test(src: &CompatSide, dst: &CompatSide) -> Option<RuleResult> {
    let value = src.attr("migration_version")?;
    let Some(path) = &dst.migration_version_path else {
        return Some(rule(
            "migration_version",
            Verdict::Unknown,
            "the source exposes migration_version, the destination does not",
        ));
    };
    Some(match std::fs::write(path, value) {
        Ok(()) => rule(
            "migration_version",
            Verdict::Pass,
            format!("the destination accepted {value:?}"),
        ),
        Err(e) => rule(
            "migration_version",
            Verdict::Fail,
            format!("the destination refused {value:?}: {e}"),
        ),
    })
}

/// Flattens sysfs attributes for the rules: unreadable ones are dropped, and an attribute
/// in a named group (`vendor/priority`) is also reachable by its bare name (`priority`).
fn flatten(attrs: &BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in attrs {
        let Some(v) = v else { continue };
        out.insert(k.clone(), v.clone());
        if let Some((_, bare)) = k.rsplit_once('/') {
            out.entry(bare.to_string()).or_insert_with(|| v.clone());
        }
    }
    out
}

/// Gathers what the check needs about an open device: identity, migration support, and for
/// mediated devices the type and instance attributes from sysfs.
pub fn side_of(
    device: &dyn Device,
    driver: Option<&dyn MigrationDriver>,
    root: &SysfsRoot,
) -> CompatSide {
    let id = &device.info().identity;
    let mut side = CompatSide {
        name: device.name().to_string(),
        device_api: Some(id.device_api.clone()).filter(|s| !s.is_empty()),
        mdev_type: id.mdev_type.clone(),
        pci_id: id.pci_id.clone(),
        migration: driver.map(|d| (d.protocol(), d.flags())),
        ..Default::default()
    };
    let uuid = id
        .sysfs_path
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|n| uuid::Uuid::try_parse(&n.to_string_lossy()).ok());
    let Some(uuid) = uuid.filter(|_| side.mdev_type.is_some()) else {
        return side;
    };
    if let Ok(inst) = mdev::instance(root, &uuid) {
        side.instance_attrs = flatten(&inst.attributes);
        if let Some((k, _)) = inst
            .attributes
            .iter()
            .find(|(k, _)| k.rsplit('/').next() == Some("migration_version"))
        {
            side.migration_version_path = Some(inst.sysfs_path.join(k));
        }
        if let Some(ty) = &inst.mdev_type {
            if let Ok(t) = mdev::find_type(root, &inst.parent, ty) {
                side.type_attrs = flatten(&t.attributes);
                if side.device_api.is_none() {
                    side.device_api = t.device_api.clone();
                }
                if side.migration_version_path.is_none()
                    && t.attributes.contains_key("migration_version")
                {
                    side.migration_version_path = Some(t.sysfs_path.join("migration_version"));
                }
            }
        }
    }
    side
}

/// Runs the whole pre-check on two open devices: gathers both sides, evaluates the rules,
/// and runs the `migration_version` write test when `write_test` is set and both sides
/// expose the attribute.
pub fn check(
    src: &crate::device::DeviceHandle,
    dst: &crate::device::DeviceHandle,
    write_test: bool,
    root: &SysfsRoot,
) -> CompatReport {
    let src_drv = super::driver_for(src.clone()).ok();
    let dst_drv = super::driver_for(dst.clone()).ok();
    let a = side_of(src.as_ref(), src_drv.as_deref(), root);
    let b = side_of(dst.as_ref(), dst_drv.as_deref(), root);
    let mut report = evaluate(&a, &b);
    if write_test {
        if let Some(r) = migration_version_test(&a, &b) {
            report.rules.push(r);
        }
    }
    report.compatible = report.rules.iter().all(|r| r.verdict != Verdict::Fail);
    report
}

#[cfg(test)]
mod tests;
