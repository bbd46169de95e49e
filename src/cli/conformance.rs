//! `vfio-harness conformance`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `conformance`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `conformance`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`conformance` is not implemented yet")
}
