//! `vfio-harness reset`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `reset`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `reset`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`reset` is not implemented yet")
}
