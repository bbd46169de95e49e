//! `vfio-harness info`: everything a device says about itself (schema: docs/info-schema.md).
//!
//! Built only on the [`Device`] trait, so it works for kernel devices and the simulator alike;
//! kernel-specific extras (IOMMU group, KVM association) come through a downcast.

use std::process::ExitCode;

use serde::Serialize;

use vfio_harness::device::{Device, DeviceSpec, MigState, RegionCap};
use vfio_harness::units::format_bytes;
use vfio_harness::vfio::pci_config::read_pci_config;
use vfio_harness::vfio::{pci, region, KernelDevice};

use super::output::print_json;
use super::Global;

/// Arguments of `info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device (`sim`, mdev UUID, PCI address, sysfs path, /dev/vfio/devices/vfioN).
    pub device: DeviceSpec,
    /// Print JSON (schema in docs/info-schema.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct RegionOut {
    index: u32,
    name: String,
    size: u64,
    offset: u64,
    flags: u32,
    flag_names: Vec<&'static str>,
    caps: Vec<RegionCap>,
}

#[derive(Serialize)]
struct IrqOut {
    index: u32,
    name: String,
    count: u32,
    flags: u32,
    flag_names: Vec<&'static str>,
}

#[derive(Serialize)]
struct MigrationOut {
    /// `v2`, `v1` or `none`.
    protocol: &'static str,
    /// v2 flag names.
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<String>>,
    /// v2 raw flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    flags_raw: Option<u64>,
    /// v2 current state.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<MigState>,
    /// v1: the migration region index.
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<u32>,
}

#[derive(Serialize)]
struct KvmOut {
    registered: bool,
    note: String,
}

#[derive(Serialize)]
struct KernelOut {
    iommu_group: Option<u32>,
    kvm: KvmOut,
    iommu_fallback: Option<String>,
}

#[derive(Serialize)]
struct InfoOut {
    name: String,
    backend: String,
    flags: u32,
    flag_names: Vec<&'static str>,
    identity: vfio_harness::device::DeviceIdentity,
    regions: Vec<RegionOut>,
    irqs: Vec<IrqOut>,
    migration: MigrationOut,
    pci_config: Option<pci::PciConfig>,
    kernel: Option<KernelOut>,
}

fn migration(dev: &dyn Device) -> anyhow::Result<MigrationOut> {
    if let Some(f) = dev.migration_flags()? {
        return Ok(MigrationOut {
            protocol: "v2",
            flags: Some(f.names()),
            flags_raw: Some(f.0),
            state: Some(dev.mig_state()?),
            region: None,
        });
    }
    let (t, s) = region::MIGRATION_V1_TYPE;
    if let Some(r) = dev.info().region_by_type(t, s) {
        return Ok(MigrationOut {
            protocol: "v1",
            flags: None,
            flags_raw: None,
            state: None,
            region: Some(r.index),
        });
    }
    Ok(MigrationOut {
        protocol: "none",
        flags: None,
        flags_raw: None,
        state: None,
        region: None,
    })
}

fn build(dev: &dyn Device) -> anyhow::Result<InfoOut> {
    let info = dev.info();
    let kernel = dev
        .as_any()
        .downcast_ref::<KernelDevice>()
        .map(|k| KernelOut {
            iommu_group: k.iommu_group(),
            kvm: KvmOut {
                registered: k.context().kvm_registered(),
                note: k.context().kvm_note().to_string(),
            },
            iommu_fallback: k.context().iommu_fallback().map(str::to_string),
        });
    Ok(InfoOut {
        name: info.name.clone(),
        backend: info.backend.clone(),
        flags: info.flags,
        flag_names: info.flag_names(),
        identity: info.identity.clone(),
        regions: info
            .regions
            .iter()
            .map(|r| RegionOut {
                index: r.index,
                name: r.name.clone(),
                size: r.size,
                offset: r.offset,
                flags: r.flags,
                flag_names: r.flag_names(),
                caps: r.caps.clone(),
            })
            .collect(),
        irqs: info
            .irqs
            .iter()
            .map(|i| IrqOut {
                index: i.index,
                name: i.name.clone(),
                count: i.count,
                flags: i.flags,
                flag_names: i.flag_names(),
            })
            .collect(),
        migration: migration(dev)?,
        pci_config: read_pci_config(dev)?,
        kernel,
    })
}

fn cap_str(c: &RegionCap) -> String {
    match c {
        RegionCap::SparseMmap { areas } => format!(
            "sparse-mmap[{}]",
            areas
                .iter()
                .map(|a| format!("{:#x}+{:#x}", a.offset, a.size))
                .collect::<Vec<_>>()
                .join(",")
        ),
        RegionCap::Type { type_, subtype } => format!("type {type_}/{subtype}"),
        RegionCap::MsixMappable => "msix-mappable".into(),
        RegionCap::Other { id } => format!("cap#{id}"),
    }
}

fn print_human(o: &InfoOut) {
    outln!("device   {} ({} back end)", o.name, o.backend);
    outln!("flags    {:#x} [{}]", o.flags, o.flag_names.join(","));
    let id = &o.identity;
    outln!("api      {}", id.device_api);
    if let Some(t) = &id.mdev_type {
        outln!(
            "mdev     type {t}, parent {}",
            id.parent.as_deref().unwrap_or("?")
        );
    }
    if let Some(p) = &id.pci_id {
        outln!(
            "pci id   {p} (subsystem {})",
            id.pci_subsystem.as_deref().unwrap_or("?")
        );
    }
    if let Some(d) = &id.driver {
        outln!("driver   {d}");
    }
    if let Some(p) = &id.sysfs_path {
        outln!("sysfs    {}", p.display());
    }
    if let Some(k) = &o.kernel {
        if let Some(g) = k.iommu_group {
            outln!("group    {g}");
        }
        outln!("kvm      {}", k.kvm.note);
        if let Some(f) = &k.iommu_fallback {
            outln!("iommu    {f}");
        }
    }
    outln!();
    outln!(
        "{:>5}  {:<14} {:>12} {:>16}  {:<20} caps",
        "index",
        "region",
        "size",
        "offset",
        "flags"
    );
    for r in &o.regions {
        outln!(
            "{:>5}  {:<14} {:>12} {:>#16x}  {:<20} {}",
            r.index,
            r.name,
            if r.size == 0 {
                "-".to_string()
            } else {
                format_bytes(r.size)
            },
            r.offset,
            r.flag_names.join(","),
            r.caps.iter().map(cap_str).collect::<Vec<_>>().join(" ")
        );
    }
    outln!();
    outln!("{:>5}  {:<6} {:>6}  flags", "index", "irq", "count");
    for i in &o.irqs {
        outln!(
            "{:>5}  {:<6} {:>6}  {}",
            i.index,
            i.name,
            i.count,
            i.flag_names.join(",")
        );
    }
    outln!();
    let m = &o.migration;
    match m.protocol {
        "v2" => outln!(
            "migration v2, flags {} , state {}",
            m.flags.as_ref().map(|f| f.join("|")).unwrap_or_default(),
            m.state.map(|s| s.to_string()).unwrap_or_default()
        ),
        "v1" => outln!(
            "migration v1 (region {})",
            m.region.map(|r| r.to_string()).unwrap_or_default()
        ),
        _ => outln!("migration none"),
    }
    if let Some(c) = &o.pci_config {
        outln!();
        outln!(
            "pci      {:04x}:{:04x} rev {:#04x} class {:06x} ({}) subsystem {:04x}:{:04x}",
            c.vendor_id,
            c.device_id,
            c.revision,
            c.class_code,
            c.class_name,
            c.subsystem_vendor_id,
            c.subsystem_id
        );
        outln!(
            "         command {:#06x} status {:#06x} header {} interrupt pin {}",
            c.command,
            c.status,
            c.header_type,
            c.interrupt_pin
        );
        for b in &c.bars {
            outln!(
                "         BAR{} {}{}{} {:#x}",
                b.index,
                b.kind,
                if b.is_64bit { " 64-bit" } else { "" },
                if b.prefetchable { " prefetchable" } else { "" },
                b.address
            );
        }
        for cap in &c.capabilities {
            outln!(
                "         cap {:#05x} {}{} ({:#04x})",
                cap.offset,
                if cap.extended { "ext " } else { "" },
                cap.name,
                cap.id
            );
        }
    }
}

/// Runs `info`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let out = build(dev.as_ref())?;
    if args.json {
        print_json(&out)?;
    } else {
        print_human(&out);
    }
    Ok(ExitCode::SUCCESS)
}
