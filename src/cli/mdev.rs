//! `vfio-harness mdev`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `mdev`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `mdev`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mdev` is not implemented yet")
}
