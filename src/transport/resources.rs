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
///
/// # Examples
///
/// In a destination's [`Opener`](super::Opener): copy what the source sent, then open. A
/// simulated device is not a mediated device, so nothing is copied for it and its list is
/// empty; for an mdev destination the list says, per resource, what was done.
///
/// ```
/// use vfio_harness::device::DeviceSpec;
/// use vfio_harness::migration::attrs::Policy;
/// use vfio_harness::migration::{driver_for, MigrationDriver, MigrationError};
/// use vfio_harness::sysfs::SysfsRoot;
/// use vfio_harness::transport::{copy_resources, Hello, TransportError, WIRE_MAGIC, WIRE_VERSION};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let specs: Vec<DeviceSpec> = vec!["sim:state=1M".parse()?];
/// let root = SysfsRoot::from_option(None);
/// let mut opener = |hello: &Hello| -> Result<Vec<Box<dyn MigrationDriver>>, TransportError> {
///     let copied = copy_resources(&root, &specs, hello, Policy::Copy)?;
///     assert!(copied.iter().all(Vec::is_empty));
///     let mut devices = Vec::new();
///     for spec in &specs {
///         let dev = vfio_harness::open(spec, &Default::default()).map_err(MigrationError::from)?;
///         devices.push(driver_for(dev)?);
///     }
///     Ok(devices)
/// };
/// let hello = Hello {
///     magic: WIRE_MAGIC.into(),
///     version: WIRE_VERSION,
///     harness_version: "0.1.0".into(),
///     devices: Vec::new(),
///     dynamic_resources: vec![None],
/// };
/// assert_eq!(opener(&hello)?.len(), 1);
/// # Ok(())
/// # }
/// ```
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
