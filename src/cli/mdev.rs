//! `vfio-harness mdev`: list parents' types and instances, create, remove, show, time open/close.
//!
//! JSON schemas are documented in `docs/mdev.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use vfio_harness::device::DeviceSpec;
use vfio_harness::sysfs::attrs::{self as sysfs_attrs, Assignment};
use vfio_harness::sysfs::mdev::{self, MdevType};
use vfio_harness::sysfs::SysfsRoot;
use vfio_harness::units::format_seconds;

use super::output::print_json;
use super::Global;

mod attrs;

/// Arguments of `mdev`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Root of sysfs (tests run on fixture trees); also taken from the environment variable
    /// `VFIO_HARNESS_SYSFS_ROOT`; `/sys` by default.
    #[arg(long, hide = true)]
    sysfs_root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// List every parent's mdev types with capacity and attributes.
    Types(TypesArgs),
    /// List mdev instances: UUID, parent, type, IOMMU group, driver, sysfs path.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show one instance with its type and attributes.
    Show(ShowArgs),
    /// Create an instance (prints its UUID), optionally with attributes or from mdevctl
    /// definitions.
    Create(CreateArgs),
    /// Write attributes of an existing instance that is not open.
    SetAttr(SetAttrArgs),
    /// Remove an instance (waits for it to be closed).
    #[command(alias = "rm")]
    Remove(RemoveArgs),
    /// Open the instance through VFIO and close it, timing first open and last close.
    Timings(TimingsArgs),
}

#[derive(clap::Args, Debug)]
struct TypesArgs {
    /// Only this parent's types.
    #[arg(long)]
    parent: Option<String>,
    /// Only types with this id (`mtty-2`).
    #[arg(long = "type")]
    mdev_type: Option<String>,
    /// Print description and every vendor attribute.
    #[arg(short, long)]
    verbose: bool,
    /// JSON output (a flat array of types).
    #[arg(long, conflicts_with = "mdevctl_json")]
    json: bool,
    /// JSON in the shape of `mdevctl types --dumpjson`.
    #[arg(long)]
    mdevctl_json: bool,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Only this parent's instances.
    #[arg(long)]
    parent: Option<String>,
    /// JSON output (a flat array of instances).
    #[arg(long, conflicts_with = "mdevctl_json")]
    json: bool,
    /// JSON in the shape of `mdevctl list --dumpjson` (active devices).
    #[arg(long)]
    mdevctl_json: bool,
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    /// The instance's UUID.
    uuid: String,
    /// JSON output.
    #[arg(long, conflicts_with = "mdevctl_json")]
    json: bool,
    /// The instance as an mdevctl definition (`/etc/mdevctl.d/<parent>/<uuid>` content).
    #[arg(long)]
    mdevctl_json: bool,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Parent device (`mtty`, `0000:00:02.0`); may be left out when only one parent has the
    /// type.
    #[arg(long)]
    parent: Option<String>,
    /// mdev type (the directory name, e.g. `mtty-2`).
    #[arg(long = "type", required_unless_present = "from_mdevctl")]
    mdev_type: Option<String>,
    /// UUID to create (a random v4 UUID when not given).
    #[arg(long)]
    uuid: Option<String>,
    /// Write an instance attribute after create, before anything opens the device
    /// (repeatable, written in order; `vendor/aggregate=2` or a bare `aggregate=2`). A
    /// refused write removes the instance again.
    #[arg(
        long = "attr",
        value_name = "NAME=VALUE",
        conflicts_with = "from_mdevctl"
    )]
    attrs: Vec<Assignment>,
    /// Create from mdevctl definitions: a `<parent>/<uuid>` file, a file of `mdevctl list
    /// --dumpjson` output, or a directory of definitions (`/etc/mdevctl.d`). All or nothing.
    #[arg(long, value_name = "PATH", conflicts_with = "mdev_type")]
    from_mdevctl: Option<PathBuf>,
    /// Report how long the `create` write took.
    #[arg(long)]
    timings: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct SetAttrArgs {
    /// The instance's UUID.
    uuid: String,
    /// Attributes to write, in order.
    #[arg(value_name = "NAME=VALUE", required = true)]
    attrs: Vec<Assignment>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct RemoveArgs {
    /// The instance's UUID.
    uuid: String,
    /// Report how long the `remove` write took.
    #[arg(long)]
    timings: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct TimingsArgs {
    /// The instance's UUID.
    uuid: String,
    /// Number of open/close cycles (each is reported).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Runs `mdev`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let root = match args
        .sysfs_root
        .or_else(|| std::env::var_os("VFIO_HARNESS_SYSFS_ROOT").map(PathBuf::from))
    {
        Some(p) => SysfsRoot::new(p),
        None => SysfsRoot::default(),
    };
    match args.command {
        Command::Types(a) => types(&root, a),
        Command::List(a) => list(&root, a),
        Command::Show(a) => show(&root, a),
        Command::Create(a) => create(&root, a),
        Command::SetAttr(a) => attrs::set_attr(&root, a),
        Command::Remove(a) => remove(&root, a),
        Command::Timings(a) => timings(&root, a, global),
    }
}

/// Prints rows as left-aligned columns separated by two spaces.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().unwrap_or("-").replace('\n', "; ")
}

fn types(root: &SysfsRoot, a: TypesArgs) -> anyhow::Result<ExitCode> {
    let types = match (&a.parent, &a.mdev_type) {
        (Some(p), Some(t)) => vec![mdev::find_type(root, p, t)?],
        (Some(p), None) => mdev::parent_types(root, p)?,
        (None, Some(t)) => {
            let found = mdev::types_named(root, t)?;
            if found.is_empty() {
                anyhow::bail!("no parent has an mdev type {t:?}");
            }
            found
        }
        (None, None) => mdev::list_types(root)?,
    };
    if a.json {
        print_json(&types)?;
    } else if a.mdevctl_json {
        print_json(&mdevctl_types(&types))?;
    } else if types.is_empty() {
        outln!("no mdev types (no parent device is registered with the mdev core)");
    } else {
        let rows: Vec<Vec<String>> = types
            .iter()
            .map(|t| {
                vec![
                    t.parent.clone(),
                    t.type_id.clone(),
                    opt(&t.device_api),
                    t.available_instances
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "?".into()),
                    t.devices.len().to_string(),
                    opt(&t.name),
                ]
            })
            .collect();
        print_table(
            &["PARENT", "TYPE", "API", "AVAILABLE", "INSTANCES", "NAME"],
            &rows,
        );
        if a.verbose {
            for t in &types {
                outln!("\n{}:", t.id());
                outln!("  description: {}", opt(&t.description));
                outln!("  sysfs path: {}", t.sysfs_path.display());
                print_attrs(&t.attributes, "  ");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_attrs(attrs: &std::collections::BTreeMap<String, Option<String>>, indent: &str) {
    if attrs.is_empty() {
        outln!("{indent}attributes: none");
        return;
    }
    outln!("{indent}attributes:");
    for (k, v) in attrs {
        match v {
            Some(v) => outln!("{indent}  {k}: {}", v.replace('\n', "; ")),
            None => outln!("{indent}  {k}: (unreadable)"),
        }
    }
}

/// `mdevctl types --dumpjson`: `[{parent: [{type: {available_instances, device_api, name,
/// description}}]}]`, absent fields left out.
fn mdevctl_types(types: &[MdevType]) -> Value {
    let mut parents = Map::new();
    for t in types {
        let mut o = Map::new();
        if let Some(n) = t.available_instances {
            o.insert("available_instances".into(), json!(n));
        }
        if let Some(d) = &t.device_api {
            o.insert("device_api".into(), json!(d));
        }
        if let Some(n) = &t.name {
            o.insert("name".into(), json!(n));
        }
        if let Some(d) = &t.description {
            o.insert("description".into(), json!(d));
        }
        let entry = parents
            .entry(t.parent.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(v) = entry {
            v.push(json!({ t.type_id.clone(): Value::Object(o) }));
        }
    }
    if parents.is_empty() {
        json!([])
    } else {
        json!([Value::Object(parents)])
    }
}

fn list(root: &SysfsRoot, a: ListArgs) -> anyhow::Result<ExitCode> {
    let mut all = mdev::list_instances(root)?;
    if let Some(p) = &a.parent {
        // Validate the name so a typo is an error, not an empty list.
        mdev::parent_types(root, p)?;
        all.retain(|i| &i.parent == p);
    }
    if a.json {
        print_json(&attrs::instances_json(&all)?)?;
    } else if a.mdevctl_json {
        outln!("{}", attrs::mdevctl_list(&all)?);
    } else if all.is_empty() {
        outln!("no mdev instances");
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|i| {
                vec![
                    i.uuid.to_string(),
                    i.parent.clone(),
                    opt(&i.mdev_type),
                    i.iommu_group
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "-".into()),
                    opt(&i.driver),
                    i.sysfs_path.display().to_string(),
                ]
            })
            .collect();
        print_table(
            &["UUID", "PARENT", "TYPE", "GROUP", "DRIVER", "SYSFS PATH"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(root: &SysfsRoot, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let uuid = mdev::parse_uuid(&a.uuid)?;
    let i = mdev::instance(root, &uuid)?;
    let ty = match &i.mdev_type {
        Some(t) => mdev::find_type(root, &i.parent, t).ok(),
        None => None,
    };
    if a.mdevctl_json {
        outln!("{}", attrs::mdevctl_show(&i)?);
        return Ok(ExitCode::SUCCESS);
    }
    if a.json {
        let mut v = attrs::instance_json(&i)?;
        if let Value::Object(o) = &mut v {
            o.insert("type_info".into(), serde_json::to_value(&ty)?);
        }
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("uuid:         {}", i.uuid);
    outln!("parent:       {}", i.parent);
    outln!(
        "type:         {}",
        i.mdev_type.as_deref().unwrap_or("? (no mdev_type link)")
    );
    if let Some(t) = &ty {
        outln!("type name:    {}", opt(&t.name));
        outln!("device api:   {}", opt(&t.device_api));
    }
    outln!(
        "iommu group:  {}",
        i.iommu_group
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into())
    );
    outln!("driver:       {}", opt(&i.driver));
    outln!(
        "vfio cdev:    {}",
        i.vfio_cdev
            .as_ref()
            .map(|c| format!("/dev/vfio/devices/{c}"))
            .unwrap_or_else(|| "-".into())
    );
    outln!("sysfs path:   {}", i.sysfs_path.display());
    print_attrs(&i.attributes, "");
    let w = sysfs_attrs::writable(&i);
    if !w.is_empty() {
        outln!("writable:     {}", w.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves `--parent` when left out: the one parent that has the type.
pub(super) fn resolve_parent(
    root: &SysfsRoot,
    parent: Option<String>,
    ty: &str,
) -> anyhow::Result<String> {
    if let Some(p) = parent {
        return Ok(p);
    }
    let found = mdev::types_named(root, ty)?;
    match found.len() {
        1 => Ok(found[0].parent.clone()),
        0 => {
            let all: Vec<String> = mdev::list_types(root)?.iter().map(|t| t.id()).collect();
            anyhow::bail!(
                "no parent has an mdev type {ty:?}; {}",
                if all.is_empty() {
                    "no mdev types exist at all (is the vendor driver loaded?)".to_string()
                } else {
                    format!("known types: {}", all.join(", "))
                }
            )
        }
        _ => anyhow::bail!(
            "several parents have an mdev type {ty:?} ({}); choose one with --parent",
            found
                .iter()
                .map(|t| t.parent.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn create(root: &SysfsRoot, a: CreateArgs) -> anyhow::Result<ExitCode> {
    // The UUID is checked first: a malformed one never leads to a sysfs write.
    let uuid = a.uuid.as_deref().map(mdev::parse_uuid).transpose()?;
    let Some(mdev_type) = a.mdev_type.clone() else {
        return attrs::create_from_mdevctl(root, a, uuid);
    };
    let parent = resolve_parent(root, a.parent, &mdev_type)?;
    let configured = sysfs_attrs::create_configured(root, &parent, &mdev_type, uuid, &a.attrs)?;
    let c = configured.created;
    let after = mdev::find_type(root, &parent, &mdev_type)
        .ok()
        .and_then(|t| t.available_instances);
    let inst = mdev::instance(root, &c.uuid).ok();
    if inst.is_none() {
        errln!(
            "warning: the kernel accepted {} but no node appeared under /sys/bus/mdev/devices",
            c.uuid
        );
    }
    if a.json {
        let mut v = json!({
            "uuid": c.uuid.hyphenated().to_string(),
            "parent": parent,
            "type": mdev_type,
            "sysfs_path": inst.as_ref().map(|i| i.sysfs_path.clone()),
            "iommu_group": inst.as_ref().and_then(|i| i.iommu_group),
            "available_instances_before": c.type_before.available_instances,
            "available_instances_after": after,
            "attributes": configured.attributes,
        });
        if a.timings {
            v["create_seconds"] = json!(c.elapsed.as_secs_f64());
        }
        print_json(&v)?;
    } else {
        outln!("{}", c.uuid);
        if a.timings {
            outln!("create: {}", format_seconds(c.elapsed.as_secs_f64()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(root: &SysfsRoot, a: RemoveArgs) -> anyhow::Result<ExitCode> {
    let uuid = mdev::parse_uuid(&a.uuid)?;
    let elapsed = mdev::remove_timed(root, &uuid)?;
    if a.json {
        let mut v = json!({ "uuid": uuid.hyphenated().to_string(), "removed": true });
        if a.timings {
            v["remove_seconds"] = json!(elapsed.as_secs_f64());
        }
        print_json(&v)?;
    } else {
        outln!("removed {uuid}");
        if a.timings {
            outln!("remove: {}", format_seconds(elapsed.as_secs_f64()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn timings(root: &SysfsRoot, a: TimingsArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let uuid: Uuid = mdev::parse_uuid(&a.uuid)?;
    // Fail early with the sysfs error when the instance does not exist.
    mdev::instance(root, &uuid)?;
    let mut opts = global.open_options();
    if root.path() != std::path::Path::new("/sys") {
        opts.sysfs_root = Some(root.path().to_path_buf());
    }
    let mut runs = Vec::new();
    let mut failed = false;
    for n in 1..=a.repeat {
        match vfio_harness::open::time_open_close(&DeviceSpec::Mdev(uuid), &opts) {
            Ok(t) => {
                if !a.json {
                    outln!(
                        "run {n}: first open {}, last close {}",
                        format_seconds(t.first_open.as_secs_f64()),
                        format_seconds(t.last_close.as_secs_f64())
                    );
                }
                runs.push(json!({
                    "first_open_seconds": t.first_open.as_secs_f64(),
                    "last_close_seconds": t.last_close.as_secs_f64(),
                    "error": null,
                }));
            }
            Err(e) => {
                failed = true;
                if !a.json {
                    outln!("run {n}: open failed: {e}");
                }
                runs.push(json!({
                    "first_open_seconds": null,
                    "last_close_seconds": null,
                    "error": e.to_string(),
                }));
                // A failed open will fail again the same way.
                break;
            }
        }
    }
    if a.json {
        print_json(&json!({ "uuid": uuid.hyphenated().to_string(), "runs": runs }))
            .context("printing timings")?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
