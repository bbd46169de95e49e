//! `vfio-harness bench`.

use std::process::ExitCode;

use super::Global;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `bench`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bench` is not implemented yet")
}
