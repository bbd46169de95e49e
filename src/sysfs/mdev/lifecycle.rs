//! Creating and removing mdev instances (`create`, `remove`), timed.

use std::fs;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::instance::instance_dir;
use super::types::{find_type, types_dir};
use super::{exists, instance, io_err, MdevType, INSTANCES_DIR};
use crate::sysfs::{read_attr, write_attr, Result, SysfsError, SysfsRoot};

/// What [`create_timed`] made.
#[derive(Clone, Debug)]
pub struct Created {
    /// The new instance's UUID.
    pub uuid: Uuid,
    /// The type as read just before creating (its `available_instances` is the "before" count).
    pub type_before: MdevType,
    /// How long the `create` write took (the kernel creates, probes and binds synchronously).
    pub elapsed: Duration,
}

/// Creates an instance of `parent`/`mdev_type` with `uuid` (a random v4 UUID when `None`) and
/// returns its UUID. See [`create_timed`].
pub fn create(root: &SysfsRoot, parent: &str, mdev_type: &str, uuid: Option<Uuid>) -> Result<Uuid> {
    create_timed(root, parent, mdev_type, uuid).map(|c| c.uuid)
}

/// Creates an instance and times the `create` write.
///
/// Before writing anything it checks that the parent and type exist (the error lists what
/// does), that no instance has this UUID, and that `available_instances` is not 0. When the
/// kernel refuses, the errno is mapped to words (no capacity, duplicate, busy, permissions)
/// and a node that appeared anyway is removed, so a failed create leaves nothing behind.
pub fn create_timed(
    root: &SysfsRoot,
    parent: &str,
    mdev_type: &str,
    uuid: Option<Uuid>,
) -> Result<Created> {
    let ty = find_type(root, parent, mdev_type)?;
    let uuid = uuid.unwrap_or_else(crate::entropy::uuid_v4);
    if exists(root, &uuid) {
        let existing = instance(root, &uuid).ok().map(|i| i.type_id());
        return Err(SysfsError::DuplicateUuid { uuid, existing });
    }
    if ty.available_instances == Some(0) {
        return Err(SysfsError::NoCapacity {
            parent: parent.to_string(),
            mdev_type: mdev_type.to_string(),
            available: Some(0),
            source: None,
        });
    }
    let create = types_dir(root, parent).join(mdev_type).join("create");
    if fs::symlink_metadata(&create).is_err() {
        return Err(SysfsError::Malformed {
            path: create,
            reason: "the type has no `create` attribute".into(),
        });
    }
    let text = uuid.hyphenated().to_string();
    let t0 = Instant::now();
    let res = write_attr(&create, &text);
    let elapsed = t0.elapsed();
    match res {
        Ok(()) => Ok(Created {
            uuid,
            type_before: ty,
            elapsed,
        }),
        Err(e) => {
            let errno = e.raw_os_error();
            if errno == Some(libc::EEXIST) {
                // Someone else's instance (created since our check): never touch it.
                let existing = instance(root, &uuid).ok().map(|i| i.type_id());
                return Err(SysfsError::DuplicateUuid { uuid, existing });
            }
            // The node did not exist before the write: whatever is there now is ours.
            if exists(root, &uuid) {
                let _ = write_attr(&instance_dir(root, &uuid).join("remove"), "1");
            }
            Err(match errno {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EUSERS) => {
                    SysfsError::NoCapacity {
                        parent: parent.to_string(),
                        mdev_type: mdev_type.to_string(),
                        available: read_attr(&create.with_file_name("available_instances"))
                            .ok()
                            .and_then(|s| s.trim().parse().ok()),
                        source: Some(e),
                    }
                }
                _ => io_err(format!("create {text} on {parent}/{mdev_type}"), &create, e),
            })
        }
    }
}

/// Removes an instance (writes `1` to its `remove`). The kernel waits for the device to be
/// closed; [`SysfsError::Busy`] when it refuses because the device is in use.
pub fn remove(root: &SysfsRoot, uuid: &Uuid) -> Result<()> {
    remove_timed(root, uuid).map(|_| ())
}

/// Removes an instance and times the `remove` write.
pub fn remove_timed(root: &SysfsRoot, uuid: &Uuid) -> Result<Duration> {
    let dir = instance_dir(root, uuid);
    if !exists(root, uuid) {
        return Err(SysfsError::NoSuchInstance {
            uuid: *uuid,
            dir: root.join(INSTANCES_DIR),
        });
    }
    let path = dir.join("remove");
    let t0 = Instant::now();
    write_attr(&path, "1").map_err(|e| io_err(format!("remove {uuid}"), &path, e))?;
    Ok(t0.elapsed())
}
