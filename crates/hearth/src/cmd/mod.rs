//! The subcommands.

pub mod bench;
mod bench_ingress;
pub mod image;
pub mod serve;
pub mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use hearth_shim::VmDir;

/// Runs the supervisor of the VM in `dir` until the VM exits.
pub async fn shim(dir: PathBuf) -> Result<ExitCode> {
    hearth_shim::run(VmDir::at(dir)).await?;
    Ok(ExitCode::SUCCESS)
}
