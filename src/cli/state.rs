//! `vfio-harness state`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `state`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `state`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`state` is not implemented yet")
}
