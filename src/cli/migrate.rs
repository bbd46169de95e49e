//! `vfio-harness migrate`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `migrate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `migrate`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`migrate` is not implemented yet")
}
