//! Instance attributes on the command line: `mdev create --from-mdevctl`, `mdev set-attr`,
//! and the attribute and mdevctl views of `mdev list` and `mdev show` (`docs/mdev.md`).

use std::process::ExitCode;

use serde_json::{json, Value};
use uuid::Uuid;

use vfio_harness::sysfs::attrs;
use vfio_harness::sysfs::mdev::{self, MdevInstance};
use vfio_harness::sysfs::mdevctl::{self, Config};
use vfio_harness::sysfs::SysfsRoot;
use vfio_harness::units::format_seconds;

use super::{CreateArgs, SetAttrArgs};

/// An instance as `list --json` / `show --json` print it: the library's fields plus
/// `writable_attributes`.
pub(super) fn instance_json(i: &MdevInstance) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(i)?;
    if let Value::Object(o) = &mut v {
        o.insert("writable_attributes".into(), json!(attrs::writable(i)));
    }
    Ok(v)
}

/// Instances for `list --json`.
pub(super) fn instances_json(all: &[MdevInstance]) -> anyhow::Result<Value> {
    Ok(Value::Array(
        all.iter()
            .map(instance_json)
            .collect::<anyhow::Result<Vec<Value>>>()?,
    ))
}

/// `list --mdevctl-json`: `mdevctl list --dumpjson`'s shape, each instance with its writable
/// attributes as `attrs` (half-made instances, without a type, are left out).
pub(super) fn mdevctl_list(all: &[MdevInstance]) -> anyhow::Result<String> {
    let devs: Vec<(String, Uuid, Config)> = all
        .iter()
        .filter_map(|i| Some((i.parent.clone(), i.uuid, Config::of_instance(i)?)))
        .collect();
    Ok(mdevctl::dumpjson(&devs)?)
}

/// `show --mdevctl-json`: the instance as an mdevctl definition.
pub(super) fn mdevctl_show(i: &MdevInstance) -> anyhow::Result<String> {
    let c = Config::of_instance(i).ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no mdev_type link yet (half-made), so it has no definition",
            i.uuid
        )
    })?;
    Ok(mdevctl::config_json(&c)?)
}

/// `set-attr UUID NAME=VALUE...`.
pub(super) fn set_attr(root: &SysfsRoot, a: SetAttrArgs) -> anyhow::Result<ExitCode> {
    let uuid = mdev::parse_uuid(&a.uuid)?;
    let written = attrs::set(root, &uuid, &a.attrs)?;
    if a.json {
        let v = json!({ "uuid": uuid.hyphenated().to_string(), "attributes": written });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for w in &written {
            outln!(
                "{}: {}",
                w.attribute,
                w.readback.as_deref().unwrap_or(w.value.as_str())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `create --from-mdevctl PATH`: every definition in PATH, all or nothing. Prints one UUID
/// per line (with `--timings` each followed by its create time), or a JSON array.
pub(super) fn create_from_mdevctl(
    root: &SysfsRoot,
    a: CreateArgs,
    uuid: Option<Uuid>,
) -> anyhow::Result<ExitCode> {
    let Some(path) = a.from_mdevctl else {
        usage!("give --type (with --attr) or --from-mdevctl");
    };
    let defs = mdevctl::load(&path)?;
    let started = mdevctl::create_all(root, &defs, a.parent.as_deref(), uuid)?;
    if a.json {
        let mut out = Vec::new();
        for s in &started {
            let c = &s.configured.created;
            let inst = mdev::instance(root, &c.uuid).ok();
            let mut v = json!({
                "uuid": c.uuid.hyphenated().to_string(),
                "parent": s.parent,
                "type": c.type_before.type_id,
                "source": s.source,
                "start": s.start.as_str(),
                "sysfs_path": inst.as_ref().map(|i| i.sysfs_path.clone()),
                "iommu_group": inst.as_ref().and_then(|i| i.iommu_group),
                "attributes": s.configured.attributes,
            });
            if a.timings {
                v["create_seconds"] = json!(c.elapsed.as_secs_f64());
            }
            out.push(v);
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for s in &started {
            let c = &s.configured.created;
            outln!("{}", c.uuid);
            if a.timings {
                outln!("create: {}", format_seconds(c.elapsed.as_secs_f64()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
