//! Copying dynamic resources before migrating (compatibility rule 5).
//!
//! A type's `dynamic_resources` attribute names per-instance attributes (an aggregation
//! count, a priority) that management must copy from the source instance to the destination
//! instance before migrating; vendors take them at create and fix them at first open, so the
//! copy happens before the destination is opened. [`plan`] reads both sides, [`apply`]
//! copies (or refuses, by [`Policy`]), [`prepare`] does both for two device specs. Across
//! hosts the source reads its side with [`source_values`] and the destination plans
//! against them with [`plan_from`] (the transport's `copy_resources` does that on the
//! destination, with what the source sent).
//!
//! Resources are matched to instance attributes as `sysfs::attrs` resolves names: an exact
//! path, or the one attribute of that name in any group (`aggregate` -> `vendor/aggregate`).
//! A resource missing or unreadable on either side is reported as unknown and never copied.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::device::DeviceSpec;
use crate::sysfs::attrs::{self, Assignment, AttrError};
use crate::sysfs::mdev::{self, MdevInstance};
use crate::sysfs::{SysfsError, SysfsRoot};

/// What to do when a dynamic resource differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Copy the source's value to the destination (the default).
    Copy,
    /// Refuse, naming the attribute.
    Refuse,
    /// Leave the destination as it is (the device decides).
    Ignore,
}

/// What happened to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Both sides already had the same value.
    Equal,
    /// The values differ and nothing was written (planned, or left by [`Policy::Ignore`]).
    Differs,
    /// The source's value was written to the destination.
    Copied,
    /// Missing or unreadable on a side: not compared, not copied.
    Unknown,
}

/// One dynamic resource of a migration pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceCopy {
    /// The name listed in `dynamic_resources`.
    pub resource: String,
    /// The destination's attribute (relative to its instance directory), when it has one.
    pub attribute: Option<String>,
    /// The source's value.
    pub source: Option<String>,
    /// The destination's value before copying.
    pub destination_before: Option<String>,
    /// The destination's value after copying (read back), for copied resources.
    pub destination_after: Option<String>,
    /// What happened.
    pub action: Action,
    /// Why a resource is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Errors preparing the destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// Reading an instance or its type failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),

    /// A resource differs and copying is not allowed. Nothing was written.
    #[error("dynamic resource {resource} differs: source {source_value:?}, destination {destination} has {destination_value:?} ({attribute}); copy it before migrating")]
    Differs {
        /// The destination instance.
        destination: Uuid,
        /// The resource.
        resource: String,
        /// The destination's attribute.
        attribute: String,
        /// The source's value.
        source_value: String,
        /// The destination's value.
        destination_value: String,
    },

    /// The destination refused a copy. The resources copied before it (`copied`) were
    /// written back to their earlier values, except those in `not_restored`.
    #[error("copying dynamic resource {resource} to {destination} failed: {source}{}", copied_suffix(.copied, .not_restored))]
    Refused {
        /// The destination instance.
        destination: Uuid,
        /// The resource.
        resource: String,
        /// The refusal (attribute, value, errno).
        #[source]
        source: Box<AttrError>,
        /// `attribute=value` copied before the refusal.
        copied: Vec<String>,
        /// Of those, the ones that could not be written back: the attribute and why.
        not_restored: Vec<(String, AttrError)>,
    },

    /// [`revert`] could not write back every earlier value.
    #[error("{destination}: could not write back the earlier value of {}: the instance keeps the copied value", list_failures(.not_restored))]
    NotRestored {
        /// The destination instance.
        destination: Uuid,
        /// The attributes that keep the copied value, and why.
        not_restored: Vec<(String, AttrError)>,
    },
}

fn list_failures(f: &[(String, AttrError)]) -> String {
    f.iter()
        .map(|(a, e)| format!("{a} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn copied_suffix(c: &[String], not_restored: &[(String, AttrError)]) -> String {
    match (c.is_empty(), not_restored.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(" (written back: {})", c.join(", ")),
        (false, false) => format!(
            " (copied before it: {}; not written back: {})",
            c.join(", "),
            list_failures(not_restored)
        ),
    }
}

/// The mdev UUID a device spec names (`Mdev`, or a sysfs path ending in a UUID).
pub fn mdev_uuid(spec: &DeviceSpec) -> Option<Uuid> {
    match spec {
        DeviceSpec::Mdev(u) => Some(*u),
        DeviceSpec::Sysfs(p) => mdev::parse_uuid(&p.file_name()?.to_string_lossy()).ok(),
        _ => None,
    }
}

/// The names in a `dynamic_resources` value, in their order, without repeats (separated by
/// commas, spaces or newlines).
pub fn parse_resources(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in s.split(|c: char| c == ',' || c.is_whitespace()) {
        if !r.is_empty() && !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
    }
    out
}

fn type_resources(root: &SysfsRoot, inst: &MdevInstance) -> Option<Vec<String>> {
    let t = mdev::find_type(root, &inst.parent, inst.mdev_type.as_deref()?).ok()?;
    t.attribute("dynamic_resources").map(parse_resources)
}

fn side(inst: &MdevInstance, res: &str) -> (Option<String>, Option<String>) {
    match attrs::resolve(inst, res) {
        Ok(a) => {
            let v = inst.attributes.get(&a).cloned().flatten();
            (Some(a), v.map(|v| v.trim().to_string()))
        }
        Err(_) => (None, None),
    }
}

/// One dynamic resource of a source instance, as a source on another host sends it
/// ([`source_values`], [`plan_from`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceValue {
    /// The name listed in the source type's `dynamic_resources`.
    pub resource: String,
    /// The source instance's value (trimmed); `None` when it has no such attribute or it
    /// cannot be read.
    pub value: Option<String>,
}

/// The dynamic resources of the source instance `src`: every name its type lists, with the
/// instance's value. Empty when the type lists none. Writes nothing.
pub fn source_values(root: &SysfsRoot, src: &Uuid) -> Result<Vec<ResourceValue>, CopyError> {
    let a = mdev::instance(root, src)?;
    Ok(type_resources(root, &a)
        .unwrap_or_default()
        .into_iter()
        .map(|resource| {
            let value = side(&a, &resource).1;
            ResourceValue { resource, value }
        })
        .collect())
}

/// [`plan`] against a source read on another host ([`source_values`]): the resources the
/// source listed (when it listed none, the destination type's, whose source values are then
/// unknown). Writes nothing.
///
/// The names come from the peer: only those the destination's own type lists in its
/// `dynamic_resources` are planned for a copy. Any other name is kept in the plan as
/// [`Action::Unknown`] with no attribute, so [`apply`] never writes it, and a note says why:
/// a peer cannot pick an arbitrary attribute of the destination to write.
pub fn plan_from(
    root: &SysfsRoot,
    source: &[ResourceValue],
    dst: &Uuid,
) -> Result<Vec<ResourceCopy>, CopyError> {
    let b = mdev::instance(root, dst)?;
    let listed = type_resources(root, &b).unwrap_or_default();
    let list: Vec<(String, Option<String>)> = if source.is_empty() {
        listed.iter().map(|r| (r.clone(), None)).collect()
    } else {
        source
            .iter()
            .map(|r| (r.resource.clone(), r.value.clone()))
            .collect()
    };
    Ok(list
        .into_iter()
        .map(|(res, sv)| {
            if !listed.contains(&res) {
                return ResourceCopy {
                    note: Some(
                        "not in the destination type's dynamic_resources: not written".into(),
                    ),
                    ..row(res, sv, None, None)
                };
            }
            let (attribute, dv) = side(&b, &res);
            row(res, sv, attribute, dv)
        })
        .collect())
}

/// One resource's comparison.
fn row(
    resource: String,
    sv: Option<String>,
    attribute: Option<String>,
    dv: Option<String>,
) -> ResourceCopy {
    let (action, note) = match (&sv, &dv, &attribute) {
        (Some(x), Some(y), _) if x == y => (Action::Equal, None),
        (Some(_), Some(_), _) => (Action::Differs, None),
        (None, _, _) => (Action::Unknown, Some("not readable on the source".into())),
        (_, _, None) => (
            Action::Unknown,
            Some("the destination has no such attribute".into()),
        ),
        (_, None, _) => (
            Action::Unknown,
            Some("not readable on the destination".into()),
        ),
    };
    ResourceCopy {
        resource,
        attribute,
        source: sv,
        destination_before: dv,
        destination_after: None,
        action,
        note,
    }
}

/// Compares the dynamic resources of two instances (listed by the source's type, else the
/// destination's). Writes nothing.
pub fn plan(root: &SysfsRoot, src: &Uuid, dst: &Uuid) -> Result<Vec<ResourceCopy>, CopyError> {
    let a = mdev::instance(root, src)?;
    let b = mdev::instance(root, dst)?;
    let list = type_resources(root, &a)
        .or_else(|| type_resources(root, &b))
        .unwrap_or_default();
    Ok(list
        .into_iter()
        .map(|res| {
            let (_, sv) = side(&a, &res);
            let (attribute, dv) = side(&b, &res);
            row(res, sv, attribute, dv)
        })
        .collect())
}

/// Applies a plan to the destination: writes the source's value of every differing resource
/// in order ([`Policy::Copy`]), refuses before writing anything ([`Policy::Refuse`]), or
/// leaves them ([`Policy::Ignore`]).
pub fn apply(
    root: &SysfsRoot,
    dst: &Uuid,
    mut plan: Vec<ResourceCopy>,
    policy: Policy,
) -> Result<Vec<ResourceCopy>, CopyError> {
    let differing = plan.iter().filter(|r| r.action == Action::Differs);
    match policy {
        Policy::Ignore => return Ok(plan),
        Policy::Refuse => {
            if let Some(r) = differing.into_iter().next() {
                return Err(CopyError::Differs {
                    destination: *dst,
                    resource: r.resource.clone(),
                    attribute: r.attribute.clone().unwrap_or_default(),
                    source_value: r.source.clone().unwrap_or_default(),
                    destination_value: r.destination_before.clone().unwrap_or_default(),
                });
            }
            return Ok(plan);
        }
        Policy::Copy => {}
    }
    let inst = mdev::instance(root, dst)?;
    let mut copied = Vec::new();
    for i in 0..plan.len() {
        let r = &mut plan[i];
        if r.action != Action::Differs {
            continue;
        }
        let (Some(attribute), Some(value)) = (r.attribute.clone(), r.source.clone()) else {
            continue;
        };
        match attrs::set_on(
            &inst,
            &[Assignment::new(attribute.as_str(), value.as_str())],
        ) {
            Ok(w) => {
                r.destination_after = w.into_iter().next().and_then(|w| w.readback);
                r.action = Action::Copied;
                copied.push(format!("{attribute}={value}"));
            }
            Err(source) => {
                let resource = r.resource.clone();
                // The destination is left as it was found: what was copied goes back.
                let not_restored = write_back(&inst, &plan[..i]);
                return Err(CopyError::Refused {
                    destination: *dst,
                    resource,
                    source: Box::new(source),
                    copied,
                    not_restored,
                });
            }
        }
    }
    Ok(plan)
}

/// Writes the destination's earlier value back for every resource [`apply`] copied, so a
/// migration that fails after [`prepare`] leaves the destination instance as it was found
/// (nothing to do unless `dst` names a mediated device, as for [`prepare`]).
/// Call it once the destination device is closed (vendors may refuse changes while it is
/// open).
///
/// # Errors
///
/// [`CopyError::Sysfs`] when the instance cannot be read; [`CopyError::NotRestored`] when a
/// value could not be written back.
pub fn revert(root: &SysfsRoot, dst: &DeviceSpec, done: &[ResourceCopy]) -> Result<(), CopyError> {
    let Some(dst) = mdev_uuid(dst).filter(|_| done.iter().any(|r| r.action == Action::Copied))
    else {
        return Ok(());
    };
    let inst = mdev::instance(root, &dst)?;
    let not_restored = write_back(&inst, done);
    if not_restored.is_empty() {
        Ok(())
    } else {
        Err(CopyError::NotRestored {
            destination: dst,
            not_restored,
        })
    }
}

/// Writes back `destination_before` of every copied resource in `done`; returns the
/// attributes that could not be, with why.
fn write_back(inst: &MdevInstance, done: &[ResourceCopy]) -> Vec<(String, AttrError)> {
    let mut failed = Vec::new();
    for r in done.iter().filter(|r| r.action == Action::Copied) {
        let (Some(attribute), Some(before)) =
            (r.attribute.as_deref(), r.destination_before.as_deref())
        else {
            continue;
        };
        if let Err(e) = attrs::set_on(inst, &[Assignment::new(attribute, before)]) {
            failed.push((attribute.to_string(), e));
        }
    }
    failed
}

/// [`plan`] and [`apply`] for a migration pair; nothing to do (an empty list) unless both
/// specs name mediated devices.
pub fn prepare(
    root: &SysfsRoot,
    src: &DeviceSpec,
    dst: &DeviceSpec,
    policy: Policy,
) -> Result<Vec<ResourceCopy>, CopyError> {
    let (Some(a), Some(b)) = (mdev_uuid(src), mdev_uuid(dst)) else {
        return Ok(Vec::new());
    };
    apply(root, &b, plan(root, &a, &b)?, policy)
}

#[cfg(test)]
#[path = "attrs_tests.rs"]
mod tests;
