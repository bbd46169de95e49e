//! `vfio-harness info`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `info`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `info`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`info` is not implemented yet")
}
