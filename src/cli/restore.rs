//! `vfio-harness restore`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `restore`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `restore`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`restore` is not implemented yet")
}
