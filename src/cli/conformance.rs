//! `vfio-harness conformance`: the migration uAPI contract, clause by clause.

use std::process::ExitCode;
use std::time::Duration;

use super::Global;
use vfio_harness::device::DeviceSpec;
use vfio_harness::migration::conformance::{self, CheckVerdict, Options, RegionWrite};
use vfio_harness::migration::driver_for;
use vfio_harness::open;
use vfio_harness::units::ByteSize;

/// Arguments of `conformance`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device to check.
    pub device: DeviceSpec,
    /// Read buffer size (the largest single read; 4K..=64M).
    #[arg(long, default_value = "1M", value_parser = super::transfer::parse_buffer)]
    pub buffer: ByteSize,
    /// Largest stream accepted before a read loop counts as never ending
    /// (default: twice the device's stop-copy estimate plus 64 MiB).
    #[arg(long)]
    pub read_limit: Option<ByteSize>,
    /// Longest any one read loop may take, seconds.
    #[arg(long, default_value_t = 300)]
    pub time_limit: u64,
    /// Largest reference stream kept (in a temporary file) for the resume checks.
    #[arg(long, default_value = "4G")]
    pub hold_limit: ByteSize,
    /// A perturbation: write HEXBYTES at OFFSET of REGION (an index or BAR0..BAR5) to make
    /// the device's state differ before a restore (the second variant writes the
    /// complement). Repeatable; applied after the built-in one (mtty, vhgpu).
    #[arg(long, value_name = "REGION:OFFSET:HEXBYTES")]
    pub perturb: Vec<RegionWrite>,
    /// Do not use the built-in perturbation for the device.
    #[arg(long)]
    pub no_builtin_perturb: bool,
    /// Print the report as JSON (one object) instead of one line per check.
    #[arg(long)]
    pub json: bool,
}

/// Runs `conformance`. Exit status 1 on any failed check.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = open(&args.device, &global.open_options())?;
    let mut drv = driver_for(dev)?;
    let opts = Options {
        buffer: args.buffer.bytes() as usize,
        read_limit: args.read_limit.map(|b| b.bytes()),
        time_limit: Duration::from_secs(args.time_limit),
        hold_limit: args.hold_limit.bytes(),
        perturb: args.perturb,
        builtin_perturb: !args.no_builtin_perturb,
    };
    if !args.json {
        outln!(
            "conformance {} (migration {}, flags {})",
            drv.device().name(),
            drv.protocol(),
            drv.flags()
        );
    }
    let json = args.json;
    let report = conformance::run(drv.as_mut(), &opts, &mut |c| {
        if !json {
            outln!("{}  {}  {}  {}", c.verdict, c.id, c.clause, c.detail);
        }
    });
    if json {
        super::output::print_json(&report)?;
    } else {
        outln!(
            "perturbation: {}\n{} passed, {} failed, {} warned, {} skipped",
            report.perturbation,
            report.passed,
            report.failed,
            report.warned,
            report.skipped
        );
    }
    Ok(
        if report
            .checks
            .iter()
            .any(|c| c.verdict == CheckVerdict::Fail)
        {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}
