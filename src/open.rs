//! The composition root: turns [`DeviceSpec`]s into open back ends.
//!
//! [`crate::device`] only defines the interface; the back ends ([`crate::sim`], and the kernel
//! through [`crate::vfio`] and [`crate::sysfs`]) implement it without knowing about each
//! other. This module is the one place that knows every back end and picks one per spec, so
//! that everything above it (drivers, migration, benchmarks, the CLI) opens devices by spec and
//! then talks only to [`crate::device::Device`].
//!
//! [`open`] and [`open_all`] are also re-exported at the crate root
//! (`vfio_harness::open(...)`).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::device::{DeviceError, DeviceHandle, DeviceSpec, OpenOptions, Result};

/// Opens one device from its spec: the simulator for `sim[:...]`, the kernel back end
/// (VFIO through the legacy container/group or iommufd) for everything else.
///
/// # Examples
///
/// ```
/// use vfio_harness::{Device, OpenOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dev = vfio_harness::open(&"sim:state=1M".parse()?, &OpenOptions::default())?;
/// assert_eq!(dev.info().backend, "sim");
/// assert!(dev.stop_copy_size()? > 1 << 20); // the state and the stream's framing
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// - [`DeviceError::InvalidSpec`] when the simulator's parameters do not parse, or a kernel
///   device cannot be found in sysfs (no such mdev, PCI device or cdev);
/// - [`DeviceError::Open`] when the kernel refuses a step of opening (no VFIO modules, the
///   device is not bound to a VFIO driver, no IOMMU group, the group or cdev is busy...), with
///   a hint naming the likely fix;
/// - [`DeviceError::GroupNotViable`] when another member of the legacy IOMMU group is still
///   bound to a host driver;
/// - any other [`DeviceError`] raised while reading the device's description.
pub fn open(spec: &DeviceSpec, opts: &OpenOptions) -> Result<DeviceHandle> {
    open_all(std::slice::from_ref(spec), opts)?
        .into_iter()
        .next()
        .ok_or_else(|| DeviceError::InvalidArgument("the back end opened no device".into()))
}

/// Opens several devices, in the order of `specs`. Kernel devices share one IOMMU context (a
/// container, or one iommufd IOAS), as a VMM shares one address space among a guest's
/// devices; each simulated device is independent.
///
/// # Examples
///
/// ```
/// use vfio_harness::{Device, DeviceSpec, OpenOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let specs: Vec<DeviceSpec> = vec!["sim:seed=1".parse()?, "sim:protocol=v1".parse()?];
/// let devs = vfio_harness::open_all(&specs, &OpenOptions::default())?;
/// assert_eq!(devs.len(), 2);
/// assert!(devs[0].migration_flags()?.is_some()); // v2
/// assert!(devs[1].migration_flags()?.is_none()); // v1: a migration region instead
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The errors of [`open`], for the first spec that fails; devices opened before the failure
/// are closed again. [`DeviceError::InvalidArgument`] if the kernel back end returned fewer
/// devices than asked for.
pub fn open_all(specs: &[DeviceSpec], opts: &OpenOptions) -> Result<Vec<DeviceHandle>> {
    let kernel: Vec<&DeviceSpec> = specs.iter().filter(|s| !s.is_sim()).collect();
    let mut opened_kernel = if kernel.is_empty() {
        Vec::new()
    } else {
        crate::vfio::open_devices(&kernel, opts)?
    }
    .into_iter();
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        match s {
            DeviceSpec::Sim(params) => out.push(crate::sim::open(params)?),
            _ => out.push(opened_kernel.next().ok_or_else(|| {
                DeviceError::InvalidArgument("kernel back end returned too few devices".into())
            })?),
        }
    }
    Ok(out)
}

/// How long opening and closing a device took.
#[derive(Clone, Debug, Serialize)]
pub struct OpenCloseTimings {
    /// Time to open the device (group/cdev, IOMMU context, device fd, device info). This is
    /// the vendor's first open when nobody else holds the device open.
    #[serde(serialize_with = "ser_secs")]
    pub first_open: Duration,
    /// Time to drop the last handle (device fd close: the vendor's last close).
    #[serde(serialize_with = "ser_secs")]
    pub last_close: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Opens a device and closes it again, timing both (some mdev vendors commit resources at
/// first open and free them at last close).
///
/// # Errors
///
/// The errors of [`open`].
pub fn time_open_close(spec: &DeviceSpec, opts: &OpenOptions) -> Result<OpenCloseTimings> {
    let t0 = Instant::now();
    let dev = open(spec, opts)?;
    let first_open = t0.elapsed();
    let t1 = Instant::now();
    drop(dev);
    let last_close = t1.elapsed();
    Ok(OpenCloseTimings {
        first_open,
        last_close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_specs_open_the_simulator_by_name() {
        let spec: DeviceSpec = "sim:protocol=v1,state=4K".parse().unwrap();
        let d = open(&spec, &OpenOptions::default()).unwrap();
        assert_eq!(d.name(), "sim:protocol=v1,state=4K");
        assert_eq!(d.info().backend, "sim");
        assert!(matches!(
            open(&"sim:state=lots".parse().unwrap(), &OpenOptions::default()),
            Err(DeviceError::InvalidSpec { .. })
        ));
    }

    #[test]
    fn open_all_keeps_the_order_and_stops_at_the_first_failure() {
        let specs: Vec<DeviceSpec> = ["sim:seed=1", "sim:seed=2,protocol=v1", "sim"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let devs = open_all(&specs, &OpenOptions::default()).unwrap();
        let names: Vec<&str> = devs.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["sim:seed=1", "sim:seed=2,protocol=v1", "sim"]);
        assert!(open_all(&[], &OpenOptions::default()).unwrap().is_empty());

        // A kernel device that is not there: refused before anything is opened.
        let root = tempfile::tempdir().unwrap();
        let opts = OpenOptions {
            sysfs_root: Some(root.path().to_path_buf()),
            ..OpenOptions::default()
        };
        let mixed: Vec<DeviceSpec> = ["sim", "0000:00:03.0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let Err(e) = open_all(&mixed, &opts) else {
            panic!("a missing PCI device was opened");
        };
        assert!(matches!(e, DeviceError::InvalidSpec { .. }), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(matches!(
            time_open_close(&mixed[1], &opts),
            Err(DeviceError::InvalidSpec { .. })
        ));
        time_open_close(&mixed[0], &opts).unwrap();
    }
}
