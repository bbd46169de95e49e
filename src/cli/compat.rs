//! `vfio-harness compat`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `compat`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `compat`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`compat` is not implemented yet")
}
