//! `vfio-harness save`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `save`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `save`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`save` is not implemented yet")
}
