//! `vfio-harness bar`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `bar`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `bar`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bar` is not implemented yet")
}
