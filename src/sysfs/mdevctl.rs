//! mdevctl's formats, read and written so mdevctl tooling and the harness can consume each
//! other's files.
//!
//! - A definition (`/etc/mdevctl.d/<parent>/<uuid>`, and `mdevctl list --uuid U --dumpjson`):
//!   `{"mdev_type": T, "start": "auto"|"manual", "attrs": [{NAME: VALUE}, ...]}`. `attrs` are
//!   written in order after create, each NAME a path relative to the instance directory
//!   (mdevctl writes `<instance>/<NAME>`). `attrs` may be absent or `null`.
//! - `mdevctl list --dumpjson` / `list --defined --dumpjson`:
//!   `[{PARENT: [{UUID: definition}, ...]}]`, parents and UUIDs sorted; `[]` when empty.
//!
//! The field order of what is printed is mdevctl's (`mdev_type`, `start`, `attrs`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use super::attrs::{self, Assignment, AttrError, Configured};
use super::mdev::{self, MdevInstance};
use super::{dir_names, SysfsError, SysfsRoot};

/// How mdevctl starts a defined device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Started when its parent appears (`"auto"`).
    Auto,
    /// Started by hand (`"manual"`).
    Manual,
}

impl Start {
    /// mdevctl's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Start::Auto => "auto",
            Start::Manual => "manual",
        }
    }
}

/// One mdevctl definition: a type, a start policy and attributes in write order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The mdev type id.
    pub mdev_type: String,
    /// The start policy.
    pub start: Start,
    /// Attributes, in the order they are written.
    pub attrs: Vec<Assignment>,
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct One<'a>(&'a Assignment);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(&self.0.name, &self.0.value)?;
                m.end()
            }
        }
        let attrs: Vec<One<'_>> = self.attrs.iter().map(One).collect();
        let mut st = s.serialize_struct("Config", 3)?;
        st.serialize_field("mdev_type", &self.mdev_type)?;
        st.serialize_field("start", self.start.as_str())?;
        st.serialize_field("attrs", &attrs)?;
        st.end()
    }
}

impl Config {
    /// Parses a definition as mdevctl does: `mdev_type` and `start` are required strings,
    /// `attrs` an array of objects with one string-valued field each (or absent/null).
    pub fn from_json(v: &Value) -> Result<Config, String> {
        let o = v
            .as_object()
            .ok_or("a definition is a JSON object {\"mdev_type\", \"start\", \"attrs\"}")?;
        let mdev_type = match o.get("mdev_type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(_) => return Err("\"mdev_type\" is not a type name".into()),
            None => return Err("\"mdev_type\" is missing".into()),
        };
        let start = match o.get("start") {
            Some(Value::String(s)) if s == "auto" => Start::Auto,
            Some(Value::String(s)) if s == "manual" => Start::Manual,
            Some(other) => return Err(format!("\"start\" is {other}, not \"auto\" or \"manual\"")),
            None => return Err("\"start\" is missing".into()),
        };
        let mut attrs = Vec::new();
        match o.get("attrs") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, item) in list.iter().enumerate() {
                    let obj = item
                        .as_object()
                        .filter(|m| m.len() == 1)
                        .ok_or_else(|| format!("attrs[{i}] is not an object with one field"))?;
                    for (k, v) in obj {
                        let v = v.as_str().ok_or_else(|| {
                            format!("attrs[{i}] ({k}): the value must be a string, not {v}")
                        })?;
                        if k.is_empty() {
                            return Err(format!("attrs[{i}] has an empty name"));
                        }
                        attrs.push(Assignment::new(k.as_str(), v));
                    }
                }
            }
            Some(other) => return Err(format!("\"attrs\" is {other}, not an array")),
        }
        Ok(Config {
            mdev_type,
            start,
            attrs,
        })
    }

    /// The definition of a live instance: its type, `manual`, and every writable attribute
    /// with a readable value, sorted by name (what it takes to create it again as it is).
    /// `None` while the instance is half-made (no type yet).
    pub fn of_instance(inst: &MdevInstance) -> Option<Config> {
        let mdev_type = inst.mdev_type.clone()?;
        let attrs = attrs::writable(inst)
            .into_iter()
            .filter_map(|k| {
                let v = inst.attributes.get(&k)?.clone()?;
                Some(Assignment::new(k, v))
            })
            .collect();
        Some(Config {
            mdev_type,
            start: Start::Manual,
            attrs,
        })
    }
}

/// A definition with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Definition {
    /// The parent: the directory holding a `<parent>/<uuid>` file, or the key in dumpjson
    /// output; `None` for a file not named by a UUID.
    pub parent: Option<String>,
    /// The UUID: the file name or the dumpjson key; `None` for a file not named by one.
    pub uuid: Option<Uuid>,
    /// The definition.
    pub config: Config,
    /// The file it was read from.
    pub source: PathBuf,
}

/// Errors reading definitions or creating from them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MdevctlError {
    /// Reading a file or directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file is not JSON.
    #[error("{}: not JSON: {source}", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A file is JSON but not in an mdevctl shape.
    #[error("{}: {reason}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A directory holds no definition.
    #[error("{}: no mdevctl definitions (files named by a UUID, directly or in <parent>/ subdirectories)", .path.display())]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// The parent of a definition could not be told.
    #[error("{}: the definition names no parent and {reason}; give one with --parent", .path.display())]
    NoParent {
        /// The definition's file.
        path: PathBuf,
        /// Why the type did not tell it.
        reason: String,
    },
    /// A UUID was given for several definitions.
    #[error("one UUID was given for {count} definitions; a UUID can only name one instance")]
    UuidForMany {
        /// How many definitions were read.
        count: usize,
    },
    /// Creating or configuring an instance from a definition failed; the instances created
    /// before it by the same call were removed again.
    #[error("{}: {source}{}", .path.display(), rollback_text(.rolled_back, .rollback_failures))]
    Create {
        /// The definition's file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<AttrError>,
        /// Instances of earlier definitions removed again.
        rolled_back: Vec<Uuid>,
        /// Removals that failed: the instance and why.
        rollback_failures: Vec<(Uuid, SysfsError)>,
    },
}

fn rollback_text(done: &[Uuid], failed: &[(Uuid, SysfsError)]) -> String {
    let mut s = String::new();
    if !done.is_empty() {
        let list: Vec<String> = done.iter().map(|u| u.to_string()).collect();
        s.push_str(&format!(
            "; removed the {} instance(s) created before it: {}",
            done.len(),
            list.join(", ")
        ));
    }
    if !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(|(u, e)| format!("{u}: {e}")).collect();
        s.push_str(&format!("; could not remove: {}", list.join("; ")));
    }
    s
}

fn uuid_name(p: &Path) -> Option<Uuid> {
    mdev::parse_uuid(&p.file_name()?.to_string_lossy()).ok()
}

/// Reads definitions from `path`:
/// - a file holding one definition; when the file is named by a UUID, that is its UUID and
///   the directory holding it names its parent (mdevctl's `<parent>/<uuid>` layout);
/// - a file holding `mdevctl list --dumpjson` output (every device in it);
/// - a directory: `/etc/mdevctl.d`-like (`<parent>/<uuid>` files) or one parent's directory
///   (`<uuid>` files). Only files named by a UUID count (mdevctl's `scripts.d/` and other
///   files are skipped).
///
/// Definitions come sorted by parent, then UUID.
pub fn load(path: &Path) -> Result<Vec<Definition>, MdevctlError> {
    let io_err = |source| MdevctlError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !fs::metadata(path).map_err(io_err)?.is_dir() {
        return load_file(path);
    }
    let mut out = Vec::new();
    for name in dir_names(path).map_err(io_err)? {
        let p = path.join(&name);
        if p.is_dir() {
            let names = dir_names(&p).map_err(|source| MdevctlError::Io {
                path: p.clone(),
                source,
            })?;
            for f in names {
                let fp = p.join(&f);
                if fp.is_file() && uuid_name(&fp).is_some() {
                    out.extend(load_file(&fp)?);
                }
            }
        } else if p.is_file() && uuid_name(&p).is_some() {
            out.extend(load_file(&p)?);
        }
    }
    if out.is_empty() {
        return Err(MdevctlError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

fn load_file(path: &Path) -> Result<Vec<Definition>, MdevctlError> {
    let text = fs::read_to_string(path).map_err(|source| MdevctlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|source| MdevctlError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |reason: String| MdevctlError::Format {
        path: path.to_path_buf(),
        reason,
    };
    match &v {
        Value::Array(_) => parse_dump(&v).map_err(format).map(|defs| {
            defs.into_iter()
                .map(|(parent, uuid, config)| Definition {
                    parent: Some(parent),
                    uuid: Some(uuid),
                    config,
                    source: path.to_path_buf(),
                })
                .collect()
        }),
        Value::Object(o) if o.contains_key("mdev_type") => {
            let config = Config::from_json(&v).map_err(format)?;
            let uuid = uuid_name(path);
            let parent = uuid
                .and(path.parent())
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned());
            Ok(vec![Definition {
                parent,
                uuid,
                config,
                source: path.to_path_buf(),
            }])
        }
        _ => Err(format(
            "neither an mdevctl definition ({\"mdev_type\", \"start\", \"attrs\"}) nor \
             `mdevctl list --dumpjson` output ([{parent: [{uuid: definition}]}])"
                .into(),
        )),
    }
}

/// Parses `[{PARENT: [{UUID: definition}, ...]}, ...]`.
fn parse_dump(v: &Value) -> Result<Vec<(String, Uuid, Config)>, String> {
    let mut out = Vec::new();
    for (i, item) in v.as_array().into_iter().flatten().enumerate() {
        let parents = item
            .as_object()
            .ok_or_else(|| format!("[{i}] is not an object {{parent: [...]}}"))?;
        for (parent, devs) in parents {
            let devs = devs
                .as_array()
                .ok_or_else(|| format!("{parent}: not an array of devices"))?;
            for d in devs {
                let d = d
                    .as_object()
                    .filter(|m| m.len() == 1)
                    .ok_or_else(|| format!("{parent}: a device is not {{uuid: definition}}"))?;
                for (u, def) in d {
                    let uuid = mdev::parse_uuid(u).map_err(|e| format!("{parent}: {e}"))?;
                    let config =
                        Config::from_json(def).map_err(|e| format!("{parent}/{u}: {e}"))?;
                    out.push((parent.clone(), uuid, config));
                }
            }
        }
    }
    Ok(out)
}

/// One definition as a pretty-printed JSON document (the content of
/// `/etc/mdevctl.d/<parent>/<uuid>`).
pub fn config_json(config: &Config) -> serde_json::Result<String> {
    serde_json::to_string_pretty(config)
}

/// Devices in the shape of `mdevctl list --dumpjson`, pretty-printed.
pub fn dumpjson(devices: &[(String, Uuid, Config)]) -> serde_json::Result<String> {
    let mut parents: BTreeMap<&str, BTreeMap<Uuid, &Config>> = BTreeMap::new();
    for (p, u, c) in devices {
        parents.entry(p.as_str()).or_default().insert(*u, c);
    }
    let nested: BTreeMap<&str, Vec<BTreeMap<String, &Config>>> = parents
        .into_iter()
        .map(|(p, devs)| {
            let list = devs
                .into_iter()
                .map(|(u, c)| BTreeMap::from([(u.hyphenated().to_string(), c)]))
                .collect();
            (p, list)
        })
        .collect();
    if nested.is_empty() {
        serde_json::to_string_pretty(&Vec::<()>::new())
    } else {
        serde_json::to_string_pretty(&[nested])
    }
}

/// What [`create_all`] made from one definition.
#[derive(Clone, Debug)]
pub struct Started {
    /// The definition's file.
    pub source: PathBuf,
    /// The parent it was created on.
    pub parent: String,
    /// The definition's start policy (reported; every definition given is created).
    pub start: Start,
    /// The instance and the attributes written.
    pub configured: Configured,
}

/// Creates an instance for every definition, in order, each with its attributes (see
/// [`attrs::create_configured`]). `parent` and `uuid` override the definitions' (a UUID
/// only makes sense for one definition); a definition without a parent goes to the one
/// parent that has its type.
///
/// All or nothing: when one fails, the instances created before it are removed again and
/// the error names the definition, the attribute and the errno.
pub fn create_all(
    root: &SysfsRoot,
    defs: &[Definition],
    parent: Option<&str>,
    uuid: Option<Uuid>,
) -> Result<Vec<Started>, MdevctlError> {
    if uuid.is_some() && defs.len() > 1 {
        return Err(MdevctlError::UuidForMany { count: defs.len() });
    }
    // Every parent is known before anything is created.
    let parents = defs
        .iter()
        .map(|d| parent_of(root, d, parent))
        .collect::<Result<Vec<String>, MdevctlError>>()?;
    let mut done: Vec<Started> = Vec::new();
    for (d, p) in defs.iter().zip(parents) {
        let res = attrs::create_configured(
            root,
            &p,
            &d.config.mdev_type,
            uuid.or(d.uuid),
            &d.config.attrs,
        );
        match res {
            Ok(configured) => done.push(Started {
                source: d.source.clone(),
                parent: p,
                start: d.config.start,
                configured,
            }),
            Err(source) => {
                let (rolled_back, rollback_failures) = roll_back(root, &done);
                return Err(MdevctlError::Create {
                    path: d.source.clone(),
                    source: Box::new(source),
                    rolled_back,
                    rollback_failures,
                });
            }
        }
    }
    Ok(done)
}

fn parent_of(
    root: &SysfsRoot,
    d: &Definition,
    given: Option<&str>,
) -> Result<String, MdevctlError> {
    if let Some(p) = given.map(str::to_string).or_else(|| d.parent.clone()) {
        return Ok(p);
    }
    let no_parent = |reason: String| MdevctlError::NoParent {
        path: d.source.clone(),
        reason,
    };
    let found =
        mdev::types_named(root, &d.config.mdev_type).map_err(|e| no_parent(e.to_string()))?;
    match found.as_slice() {
        [one] => Ok(one.parent.clone()),
        [] => Err(no_parent(format!(
            "no parent has its type {:?}",
            d.config.mdev_type
        ))),
        many => Err(no_parent(format!(
            "several parents have its type {:?} ({})",
            d.config.mdev_type,
            many.iter()
                .map(|t| t.parent.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Removes the instances made so far, newest first.
fn roll_back(root: &SysfsRoot, done: &[Started]) -> (Vec<Uuid>, Vec<(Uuid, SysfsError)>) {
    let mut removed = Vec::new();
    let mut failures = Vec::new();
    for s in done.iter().rev() {
        let u = s.configured.created.uuid;
        match mdev::remove(root, &u) {
            Ok(()) => removed.push(u),
            Err(err) => failures.push((u, err)),
        }
    }
    (removed, failures)
}

#[cfg(test)]
#[path = "mdevctl_tests.rs"]
mod tests;
