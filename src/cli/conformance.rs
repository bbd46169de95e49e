//! `vfio-harness conformance`: the migration uAPI contract, arc by arc.

use std::process::ExitCode;

use super::Global;
use vfio_harness::device::DeviceSpec;
use vfio_harness::migration::conformance::{self, CheckVerdict, Options};
use vfio_harness::migration::driver_for;
use vfio_harness::open;
use vfio_harness::units::ByteSize;

/// Arguments of `conformance`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device to check.
    pub device: DeviceSpec,
    /// Read buffer size.
    #[arg(long, default_value = "1M")]
    pub buffer: ByteSize,
    /// Largest STOP_COPY stream accepted before a read counts as never ending
    /// (default: twice the device's stop-copy estimate plus 64 MiB).
    #[arg(long)]
    pub read_limit: Option<ByteSize>,
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
            outln!("{} {}: {}", c.verdict, c.name, c.detail);
        }
    });
    if json {
        super::output::print_json(&report)?;
    } else {
        outln!(
            "{} passed, {} failed, {} skipped",
            report.passed,
            report.failed,
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
