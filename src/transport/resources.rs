//! The destination's half of the mdev `dynamic_resources` copy across hosts: the source
//! sends its instances' values in HELLO ([`Hello::dynamic_resources`]), the destination
//! copies them to its mdevs before it opens them, by the same rules and policies as an
//! in-process migrate ([`crate::migration::attrs`]).

use super::error::Result;
use super::frame::Hello;
use crate::device::DeviceSpec;
use crate::migration::attrs::{self, Policy, ResourceCopy};
use crate::sysfs::SysfsRoot;

/// Copies (or checks, by `policy`) the dynamic resources the source sent in `hello` to each
/// destination in `specs` (device-index order) that is a mediated device, before anything
/// opens it. Returns one list per device (empty for a device that is not an mdev, or whose
/// source sent nothing). Call it from the [`Opener`](super::Opener), before opening.
///
/// # Errors
///
/// [`TransportError::Resources`](super::TransportError::Resources): a destination instance
/// cannot be read, a resource differs and `policy` is [`Policy::Refuse`]
/// ([`CopyError::Differs`](crate::migration::attrs::CopyError::Differs), refused to the
/// source as `incompatible`), or the destination refused a copy.
pub fn copy_resources(
    root: &SysfsRoot,
    specs: &[DeviceSpec],
    hello: &Hello,
    policy: Policy,
) -> Result<Vec<Vec<ResourceCopy>>> {
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let sent = hello.dynamic_resources.get(i).and_then(Option::as_ref);
        let done = match (sent, attrs::mdev_uuid(spec)) {
            (Some(values), Some(dst)) => {
                attrs::apply(root, &dst, attrs::plan_from(root, values, &dst)?, policy)?
            }
            _ => Vec::new(),
        };
        out.push(done);
    }
    Ok(out)
}
