//! `vfio-harness dma`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `dma`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `dma`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`dma` is not implemented yet")
}
