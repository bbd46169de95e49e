//! Command-line parsing and dispatch. Each subcommand lives in its own module.

#[macro_use]
mod output;
#[macro_use]
mod failure;
mod args;
mod bar;
mod bench;
mod compat;
mod conformance;
mod dirty_log;
mod dma;
mod info;
mod irq;
mod mdev;
mod migrate;
mod receive;
mod remote;
mod reset;
mod restore;
mod save;
mod signals;
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
            kvm_device: None,
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
    /// DMA dirty logging: start, device DMA, report (vs the pages written), stop.
    DirtyLog(dirty_log::Args),
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

/// Entry point: parse, run, report errors (as JSON with `--json`), map to an exit code.
pub fn main() -> ExitCode {
    // Decided before parsing, so that a usage error is reported as JSON too.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e, json),
    };
    let g = cli.global;
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Info(a) => info::run(a, &g),
        Command::Bar(a) => bar::run(a, &g),
        Command::Dma(a) => dma::run(a, &g),
        Command::Irq(a) => irq::run(a, &g),
        Command::DirtyLog(a) => dirty_log::run(a, &g),
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
    let code = match result {
        Ok(code) => code,
        Err(e) => failure::report(e, json),
    };
    match output::take_stdout_error() {
        None => code,
        // The reader went away (`| head`): end quietly, as a process killed by SIGPIPE would.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Some(e) => {
            if code == ExitCode::SUCCESS {
                errln!("error: the command succeeded, but its report could not be written: {e}");
            } else {
                errln!("error: cannot write the output: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Reports a command-line parsing error (help and version are printed as asked).
fn usage_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) || !json
    {
        // clap prints help to stdout and errors to stderr; a failing stream has nowhere
        // left to report to.
        let _ = e.print();
        return if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let message = e.kind().to_string();
    let detail = e.render().to_string();
    let out = serde_json::json!({
        "error": {"kind": "usage", "message": message, "causes": [detail.trim_end()], "hint": null},
        "devices": [],
    });
    if output::print_json(&out).is_err() {
        errln!("error: {detail}");
    }
    match output::take_stdout_error() {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => errln!("error: {detail}"),
        _ => {}
    }
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--no-overlap` reaches every transfer command's engine options and `--max-poll`
    /// those of the commands that poll; overlap and the engine's polling limit are the
    /// defaults.
    #[test]
    fn every_transfer_command_takes_no_overlap_and_max_poll_where_it_polls() {
        use std::time::Duration;
        use vfio_harness::migration::engine::{Options, DEFAULT_MAX_POLL};
        let engine = |args: &[&str], extra: &[&str]| -> Options {
            let argv = ["vfio-harness"].iter().chain(args.iter()).chain(extra);
            let cli = Cli::try_parse_from(argv).expect("parses");
            let o = Options::default();
            match cli.command {
                Command::Save(a) => a.polling.apply(a.threads.apply(o)),
                Command::Restore(a) => a.polling.apply(a.threads.apply(o)),
                Command::Migrate(a) => a.polling.apply(a.threads.apply(o)),
                Command::Receive(a) => a.threads.apply(o),
                other => panic!("parsed as {other:?}"),
            }
        };
        let polling: [&[&str]; 3] = [
            &["save", "sim:", "-o", "f"],
            &["restore", "sim:", "-i", "f"],
            &["migrate", "sim:", "sim:"],
        ];
        let receive: &[&str] = &["receive", "sim:", "--listen", "127.0.0.1:1"];
        for args in polling.iter().chain([&receive]) {
            let o = engine(args, &[]);
            assert!(o.overlap, "{args:?}");
            assert_eq!(o.max_poll, DEFAULT_MAX_POLL, "{args:?}");
            assert!(!engine(args, &["--no-overlap"]).overlap, "{args:?}");
        }
        for args in polling {
            let o = engine(args, &["--max-poll", "250us"]);
            assert_eq!(o.max_poll, Duration::from_micros(250), "{args:?}");
            assert_eq!(engine(args, &["--max-poll", "0"]).max_poll, Duration::ZERO);
        }
        assert!(Cli::try_parse_from(
            ["vfio-harness"]
                .iter()
                .chain(receive)
                .chain(&["--max-poll", "1ms"])
        )
        .is_err());
    }
}
