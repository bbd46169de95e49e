//! `vfio-harness irq`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `irq`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `irq`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`irq` is not implemented yet")
}
