//! Opens a device through the library and prints what it says about itself.
//!
//! `cargo run --example info [DEVICE]` (default `sim`, the built-in simulator; kernel devices
//! by mdev UUID, PCI address, sysfs path or /dev/vfio/devices/vfioN).

use vfio_harness::device::{DeviceSpec, OpenOptions};

fn main() -> anyhow::Result<()> {
    let spec: DeviceSpec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sim".into())
        .parse()?;
    let opts = OpenOptions {
        kvm: true,
        ..OpenOptions::default()
    };
    let dev = vfio_harness::open(&spec, &opts)?;
    let info = dev.info();
    println!(
        "{} ({} back end), flags {:?}",
        info.name,
        info.backend,
        info.flag_names()
    );
    for r in &info.regions {
        println!(
            "  region {:>2} {:<14} size {:#x} flags {:?}",
            r.index,
            r.name,
            r.size,
            r.flag_names()
        );
    }
    for i in &info.irqs {
        println!("  irq    {:>2} {:<6} count {}", i.index, i.name, i.count);
    }
    match dev.migration_flags()? {
        Some(f) => println!("  migration v2: {f}, state {}", dev.mig_state()?),
        None => println!("  migration v2: none"),
    }
    Ok(())
}
