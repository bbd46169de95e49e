//! A VMM-shaped program: it owns its VFIO objects, its KVM VM and its guest memory, and hands
//! them to the library, as a VMM embedding vfio-harness would.
//!
//! ```text
//! cargo run --example vmm_adopt -- DEVICE [--iommu legacy|iommufd] [--no-kvm]
//!                                         [--explicit-kvm] [--raw-fd] [--mem-mib N]
//!                                         [--migrate]
//! ```
//!
//! DEVICE is a sysfs device node (`/sys/bus/pci/devices/0000:00:03.0`,
//! `/sys/bus/mdev/devices/<uuid>`), a PCI address, an mdev UUID, or a VFIO cdev
//! (`/dev/vfio/devices/vfioN`, always iommufd). What it does:
//! 1. creates its own KVM VM and KVM-VFIO device when `/dev/kvm` exists (`--no-kvm`: not);
//! 2. opens the device itself with vfio-ioctls (a `VfioContainer`, or a `VfioIommufd`),
//!    giving the container its KVM-VFIO handle, or (`--explicit-kvm`) registering the device
//!    with the VM through the library afterwards;
//! 3. hands the `VfioDevice` and the container/iommufd to the library and prints what the
//!    device says about itself; with `--raw-fd` also adopts a bare duplicate of the device fd
//!    and checks that it describes the same device;
//! 4. builds its guest memory (`GuestMemoryMmap`: N MiB at 0 and 2 MiB at 4 GiB) and maps it
//!    for device DMA through the library: at IOVA = guest address, then again (refused: the
//!    IOVAs are taken, the error names the region and errno), then shifted by 16 GiB;
//!    unmaps explicitly;
//! 5. with `--migrate` (a device with migration v2), saves the adopted device's state through
//!    the library's engine, overwrites a marker, restores the state and checks the marker is
//!    back (mtty's scratch register BAR0+7, or 4 KiB at the start of BAR2 when there is a
//!    readable and writable one, as vhgpu's VRAM).
//!
//! Besides its own report it prints the device as the kernel described it to the library,
//! in `tests/vm/probe/vfio-probe`'s format on lines starting `raw ` (`raw flags N`,
//! `raw region INDEX SIZE FLAGS [TYPE/SUBTYPE]`, `raw irq INDEX COUNT FLAGS`,
//! `raw mig FLAGS|none`), so a test can compare it with the raw ioctls.
//!
//! Prints `vmm_adopt: OK` at the end; exits 2 without a device, 1 on any failure.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use vfio_harness::device::{Device, DeviceHandle};
use vfio_harness::migration::{driver_for, engine};
use vfio_harness::vfio::{
    AdoptOptions, GuestDmaError, IovaLayout, KernelDevice, KvmVfioDevice, VfioContext,
};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioIommufd};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const USAGE: &str = "usage: vmm_adopt DEVICE [--iommu legacy|iommufd] [--no-kvm] [--explicit-kvm] [--raw-fd] [--mem-mib N] [--migrate]
  DEVICE: sysfs node, PCI address, mdev UUID, or /dev/vfio/devices/vfioN";

struct Args {
    device: String,
    iommufd: bool,
    kvm: bool,
    explicit_kvm: bool,
    raw_fd: bool,
    mem_mib: u64,
    migrate: bool,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        device: String::new(),
        iommufd: false,
        kvm: true,
        explicit_kvm: false,
        raw_fd: false,
        mem_mib: 16,
        migrate: false,
    };
    while let Some(s) = it.next() {
        match s.as_str() {
            "--iommu" => match it.next().as_deref() {
                Some("legacy") => a.iommufd = false,
                Some("iommufd") => a.iommufd = true,
                other => return Err(format!("--iommu takes legacy or iommufd, not {other:?}")),
            },
            "--no-kvm" => a.kvm = false,
            "--explicit-kvm" => a.explicit_kvm = true,
            "--raw-fd" => a.raw_fd = true,
            "--migrate" => a.migrate = true,
            "--mem-mib" => {
                a.mem_mib = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or("--mem-mib takes a positive number of MiB")?
            }
            "-h" | "--help" => return Err(String::new()),
            d if !d.starts_with('-') && a.device.is_empty() => a.device = d.to_string(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if a.device.is_empty() {
        return Err("no device given".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("vmm_adopt: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => {
            println!("vmm_adopt: OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vmm_adopt: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The sysfs node of DEVICE (for a cdev: through /sys/class/vfio-dev), when there is one.
fn sysfs_node(device: &str) -> Option<PathBuf> {
    if let Some(name) = device.strip_prefix("/dev/vfio/devices/") {
        return std::fs::canonicalize(format!("/sys/class/vfio-dev/{name}/device")).ok();
    }
    if device.starts_with('/') {
        return Some(PathBuf::from(device));
    }
    let pci = Path::new("/sys/bus/pci/devices").join(device);
    if pci.exists() {
        return Some(pci);
    }
    Some(Path::new("/sys/bus/mdev/devices").join(device))
}

/// The VMM's own objects: the device, and the context over its container or iommufd.
struct Opened {
    dev: Arc<VfioDevice>,
    ctx: Arc<VfioContext>,
}

fn open_device(
    args: &Args,
    node: Option<&Path>,
    kvm: Option<&KvmVfioDevice>,
) -> anyhow::Result<Opened> {
    // With --explicit-kvm the container gets no handle: the library registers the device.
    let handle = kvm
        .filter(|_| !args.explicit_kvm)
        .map(KvmVfioDevice::handle);
    let is_cdev = args.device.starts_with("/dev/vfio/devices/");
    if is_cdev || args.iommufd {
        let iommufd = iommufd_ioctls::IommuFd::new().context("open /dev/iommu")?;
        let vfio_iommufd = Arc::new(
            VfioIommufd::new(Arc::new(iommufd), None, handle).context("allocate an IOAS")?,
        );
        let dev = if is_cdev {
            let cdev = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&args.device)
                .with_context(|| format!("open {}", args.device))?;
            VfioDevice::new_from_fd(cdev, vfio_iommufd.clone(), true)
        } else {
            let node = node.context("no sysfs node")?;
            VfioDevice::new(node, vfio_iommufd.clone(), true)
        }
        .with_context(|| format!("vfio-ioctls: open {} through iommufd", args.device))?;
        println!(
            "VMM: opened {} through its iommufd (IOAS {})",
            args.device,
            vfio_iommufd.ioas().id()
        );
        Ok(Opened {
            dev: Arc::new(dev),
            ctx: Arc::new(VfioContext::from_iommufd(vfio_iommufd)),
        })
    } else {
        let node = node.context("no sysfs node")?;
        let container =
            Arc::new(VfioContainer::new(handle).context("vfio-ioctls: open /dev/vfio/vfio")?);
        let dev = VfioDevice::new(node, container.clone(), true)
            .with_context(|| format!("vfio-ioctls: open {} in a container", node.display()))?;
        println!("VMM: opened {} in its legacy container", node.display());
        Ok(Opened {
            dev: Arc::new(dev),
            ctx: Arc::new(VfioContext::from_container(container)),
        })
    }
}

fn print_device(kd: &KernelDevice) -> anyhow::Result<()> {
    let info = kd.info();
    println!(
        "device {} ({} back end), flags {:#x} {:?}, api {}",
        info.name,
        info.backend,
        info.flags,
        info.flag_names(),
        info.identity.device_api
    );
    for r in &info.regions {
        println!(
            "  region {:>2} {:<14} size {:#x} offset {:#x} flags {:?}",
            r.index,
            r.name,
            r.size,
            r.offset,
            r.flag_names()
        );
    }
    for i in &info.irqs {
        println!(
            "  irq    {:>2} {:<6} count {} flags {:#x}",
            i.index, i.name, i.count, i.flags
        );
    }
    let mig = kd.migration_flags()?;
    match mig {
        Some(f) => println!("  migration v2: {f}, state {}", kd.mig_state()?),
        None => println!("  migration v2: none"),
    }
    // The same, in vfio-probe's format.
    println!("raw flags {}", info.flags);
    for r in &info.regions {
        let ts = r
            .type_subtype()
            .map(|(t, s)| format!(" {t}/{s}"))
            .unwrap_or_default();
        println!("raw region {} {} {}{ts}", r.index, r.size, r.flags);
    }
    for i in &info.irqs {
        println!("raw irq {} {} {}", i.index, i.count, i.flags);
    }
    match mig {
        Some(f) => println!("raw mig {}", f.0),
        None => println!("raw mig none"),
    }
    Ok(())
}

/// Saves the adopted device's state through the engine, overwrites a marker, restores the
/// state and checks the marker came back with it.
fn migrate_through(kd: &Arc<KernelDevice>) -> anyhow::Result<()> {
    let dev: DeviceHandle = Arc::clone(kd) as DeviceHandle;
    let bar2 = dev.info().regions.iter().find(|r| r.index == 2);
    let (region, offset, len) = match bar2 {
        Some(r) if r.size >= 4096 && r.readable() && r.writable() => (2u32, 0u64, 4096usize),
        _ => (0, 7, 1),
    };
    let marker: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(29) ^ 0xa6)
        .collect();
    dev.write_region(region, offset, &marker)?;
    let mut drv = driver_for(Arc::clone(&dev))?;
    let opts = engine::Options::default();
    let (saved, report) = engine::save(drv.as_mut(), Vec::new(), "memory", &opts)?;
    let other: Vec<u8> = marker.iter().map(|b| !b).collect();
    dev.write_region(region, offset, &other)?;
    let restored = engine::restore(drv.as_mut(), &saved[..], &opts)?;
    let mut got = vec![0u8; len];
    dev.read_region(region, offset, &mut got)?;
    if got != marker {
        bail!("after the restore region {region} at {offset:#x} does not hold the saved marker");
    }
    println!(
        "migration: saved {} bytes ({} stream bytes), restored {} bytes; the marker in region {region} at {offset:#x} came back; state {}",
        report.bytes,
        saved.len(),
        restored.bytes,
        drv.state()?
    );
    Ok(())
}

/// A second, bare fd of the same device, adopted without its VfioDevice: it must describe
/// the same device, and answer the migration query through the library's own ioctls.
fn check_raw_fd(
    dev: &VfioDevice,
    kd: &KernelDevice,
    ctx: &Arc<VfioContext>,
    node: Option<&Path>,
) -> anyhow::Result<()> {
    // SAFETY: dup returns a fresh fd (checked below) that nothing else owns.
    let raw = unsafe { libc::dup(dev.as_raw_fd()) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("dup the device fd");
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut opts = AdoptOptions::new().name(format!("{} (bare fd)", kd.info().name));
    if let Some(n) = node {
        opts = opts.sysfs_path(n);
    }
    let bare = KernelDevice::from_device_fd(fd, Arc::clone(ctx), &opts)?;
    let (a, b) = (kd.info(), bare.info());
    if a.flags != b.flags || a.regions != b.regions || a.irqs != b.irqs {
        bail!("the bare fd describes another device: {a:?} vs {b:?}");
    }
    let (ma, mb) = (kd.migration_flags()?, bare.migration_flags()?);
    if ma != mb {
        bail!("migration flags differ: {ma:?} through vfio-ioctls, {mb:?} through the bare fd");
    }
    println!(
        "bare fd: same flags, {} regions, {} IRQ indexes, migration {mb:?}",
        b.regions.len(),
        b.irqs.len()
    );
    Ok(())
}

fn map_guest_memory(ctx: &Arc<VfioContext>, mem: &GuestMemoryMmap) -> anyhow::Result<()> {
    match ctx.iova_ranges() {
        Ok((granule, ranges)) => println!("IOMMU: granule {granule:#x}, IOVA ranges {ranges:x?}"),
        Err(e) => println!("IOMMU: ranges not reported ({e})"),
    }
    let dma = ctx
        .map_guest_memory(mem)
        .context("map guest memory at IOVA = guest address")?;
    for r in dma.regions() {
        println!(
            "DMA: region {} guest {:#x} -> IOVA {:#x}, {:#x} bytes",
            r.region, r.guest_addr, r.iova, r.len
        );
    }
    // The same IOVAs again: the kernel refuses, the error names the region and the errno.
    match ctx.map_guest_memory(mem) {
        Ok(_) => bail!("mapping the same guest memory twice was accepted"),
        Err(e @ GuestDmaError::Dma { .. }) => println!(
            "DMA: second identity mapping refused as expected: region {}, errno {:?}: {e}",
            e.region(),
            e.errno()
        ),
        Err(e) => return Err(e).context("second identity mapping refused before the kernel"),
    }
    let shifted = ctx
        .map_guest_memory_with(mem, &IovaLayout::Offset(16 << 30))
        .context("map guest memory 16 GiB up")?;
    let first = shifted
        .iova(GuestAddress(0))
        .context("guest address 0 is mapped")?;
    println!("DMA: shifted mapping puts guest 0x0 at IOVA {first:#x}");
    shifted.unmap().context("unmap the shifted mapping")?;
    dma.unmap().context("unmap guest memory")?;
    println!("DMA: unmapped");
    Ok(())
}

fn run(args: &Args) -> anyhow::Result<()> {
    // 1. The VMM's VM.
    let vm = if args.kvm && Path::new("/dev/kvm").exists() {
        let kvm = kvm_ioctls::Kvm::new().context("open /dev/kvm")?;
        Some(kvm.create_vm().context("create the VMM's VM")?)
    } else {
        println!(
            "KVM: no VM ({})",
            if args.kvm { "no /dev/kvm" } else { "--no-kvm" }
        );
        None
    };
    let kvm_vfio = vm.as_ref().map(KvmVfioDevice::create).transpose()?;
    if let Some(k) = &kvm_vfio {
        println!("KVM: the VMM's VM has its KVM-VFIO device {k:?}");
    }

    // 2. The VMM opens its device.
    let node = sysfs_node(&args.device);
    let Opened { dev, ctx } = open_device(args, node.as_deref(), kvm_vfio.as_ref())?;

    // 3. Handed to the library.
    let mut opts = AdoptOptions::new();
    if let Some(n) = &node {
        opts = opts.sysfs_path(n);
    }
    let kd = Arc::new(KernelDevice::from_vfio_device(
        Arc::clone(&dev),
        Arc::clone(&ctx),
        &opts,
    )?);
    match (&kvm_vfio, args.explicit_kvm) {
        (Some(k), true) => {
            k.add_device(&kd)?;
            println!("KVM: device registered with the VMM's VM through the library");
        }
        (Some(_), false) => {
            println!("KVM: device registered through the container's KVM-VFIO handle")
        }
        (None, _) => {}
    }
    print_device(&kd)?;
    if args.raw_fd {
        check_raw_fd(&dev, &kd, &ctx, node.as_deref())?;
    }

    // 4. The VMM's guest memory, mapped for the device's DMA.
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), (args.mem_mib << 20) as usize),
        (GuestAddress(4 << 30), 2 << 20),
    ])
    .context("build the guest memory")?;
    map_guest_memory(&ctx, &mem)?;

    // 5. A migration through the adopted device.
    if args.migrate {
        migrate_through(&kd)?;
    }

    if let (Some(k), true) = (&kvm_vfio, args.explicit_kvm) {
        k.remove_device(&kd)?;
        println!("KVM: device unregistered");
    }
    // The library's handle goes first, then the VMM's device (releasing its group).
    drop(kd);
    drop(dev);
    Ok(())
}
