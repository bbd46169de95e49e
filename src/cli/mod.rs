//! Command-line parsing and dispatch. Each subcommand lives in its own module.

mod args;
mod bar;
mod bench;
mod compat;
mod conformance;
mod dma;
mod info;
mod irq;
mod mdev;
mod migrate;
mod output;
mod receive;
mod remote;
mod reset;
mod restore;
mod save;
mod state;
mod transfer;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use vfio_harness::device::IommuBackend;

/// Options shared by every subcommand that opens devices.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// IOMMU interface for kernel devices: legacy (container/group), iommufd (cdev), auto.
    #[arg(long, global = true, default_value = "auto")]
    pub iommu: IommuBackend,
    /// Do not register devices with a KVM-VFIO pseudo device even when /dev/kvm exists.
    #[arg(long, global = true)]
    pub no_kvm: bool,
}

impl Global {
    /// Open options for the library.
    pub fn open_options(&self) -> vfio_harness::OpenOptions {
        vfio_harness::OpenOptions {
            iommu: self.iommu,
            kvm: !self.no_kvm,
            sysfs_root: None,
        }
    }
}

/// Drive devices through Linux VFIO: inspect, poke, migrate, benchmark.
///
/// DEVICE is `sim[:key=value,...]` (the built-in simulator), an mdev UUID, a PCI address
/// (0000:00:03.0), a sysfs device path or /dev/vfio/devices/vfioN.
#[derive(Parser, Debug)]
#[command(name = "vfio-harness", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a device: regions, IRQs, migration, PCI config.
    Info(info::Args),
    /// Read, write or dump a region (BAR) with width-correct accesses.
    Bar(bar::Args),
    /// Map and unmap DMA memory; --check makes the device DMA a pattern.
    Dma(dma::Args),
    /// Enable, trigger, mask and wait for interrupts.
    Irq(irq::Args),
    /// Reset a device (VFIO_DEVICE_RESET).
    Reset(reset::Args),
    /// Read or set the migration v2 state, arc by arc.
    State(state::Args),
    /// Mediated devices: list types and instances, create, remove.
    Mdev(mdev::Args),
    /// Save device state to a stream file.
    Save(save::Args),
    /// Restore device state from a stream file.
    Restore(restore::Args),
    /// Migrate state live from one device to another, here or across hosts (to an address).
    Migrate(migrate::Args),
    /// Receive a migration from another host into DEVICE(s), listening on an address.
    Receive(receive::Args),
    /// Check whether SRC's state can migrate into DST.
    Compat(compat::Args),
    /// Walk the migration uAPI contract arc by arc and report.
    Conformance(conformance::Args),
    /// Measure save/restore/live throughput and downtime.
    Bench(bench::Args),
}

/// Entry point: parse, run, print errors with their causes, map to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = cli.global;
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Info(a) => info::run(a, &g),
        Command::Bar(a) => bar::run(a, &g),
        Command::Dma(a) => dma::run(a, &g),
        Command::Irq(a) => irq::run(a, &g),
        Command::Reset(a) => reset::run(a, &g),
        Command::State(a) => state::run(a, &g),
        Command::Mdev(a) => mdev::run(a, &g),
        Command::Save(a) => save::run(a, &g),
        Command::Restore(a) => restore::run(a, &g),
        Command::Migrate(a) => migrate::run(a, &g),
        Command::Receive(a) => receive::run(a, &g),
        Command::Compat(a) => compat::run(a, &g),
        Command::Conformance(a) => conformance::run(a, &g),
        Command::Bench(a) => bench::run(a, &g),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut shown = e.to_string();
            eprintln!("error: {shown}");
            // Causes whose text the message above already includes are not repeated.
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !shown.contains(&c) {
                    eprintln!("  caused by: {c}");
                    shown = c;
                }
            }
            ExitCode::FAILURE
        }
    }
}
