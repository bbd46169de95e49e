//! `vfio-harness compat`: the migration compatibility pre-check.

use std::process::ExitCode;

use super::Global;
use vfio_harness::device::DeviceSpec;
use vfio_harness::migration::compat::{check, Verdict};
use vfio_harness::open_all;

/// Arguments of `compat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source device (whose state would be saved).
    pub src: DeviceSpec,
    /// Destination device (which would resume it).
    pub dst: DeviceSpec,
    /// Treat rules that cannot be evaluated (missing attributes) as failures.
    #[arg(long)]
    pub strict: bool,
    /// Skip the migration_version write test (it writes the destination's attribute).
    #[arg(long)]
    pub no_write_test: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `compat`. Exit status 0 only when compatible.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let devs = open_all(
        &[args.src.clone(), args.dst.clone()],
        &global.open_options(),
    )?;
    let root =
        vfio_harness::sysfs::SysfsRoot::from_option(global.open_options().sysfs_root.as_deref());
    let report = check(&devs[0], &devs[1], !args.no_write_test, &root);
    let ok = if args.strict {
        report.strict()
    } else {
        report.compatible
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["strict"] = args.strict.into();
        v["verdict"] = if ok { "compatible" } else { "incompatible" }.into();
        super::output::print_json(&v)?;
    } else {
        outln!("compat {} -> {}", report.source, report.destination);
        let w = report
            .rules
            .iter()
            .map(|r| r.rule.len())
            .max()
            .unwrap_or(4)
            .max(4);
        for r in &report.rules {
            outln!(
                "  {:<7} {:<w$}  {}",
                r.verdict.to_string(),
                r.rule,
                r.reason
            );
        }
        let unknown = report
            .rules
            .iter()
            .filter(|r| r.verdict == Verdict::Unknown)
            .count();
        outln!(
            "{}{}",
            if ok { "compatible" } else { "INCOMPATIBLE" },
            if unknown > 0 && ok {
                format!(
                    " ({unknown} rule(s) unknown: attributes not exposed; --strict refuses them)"
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
