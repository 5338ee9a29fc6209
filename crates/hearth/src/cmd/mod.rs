//! The subcommands.

pub mod api;
pub mod bench;
pub mod bench_api;
mod bench_ingress;
pub mod drain;
pub mod image;
pub mod image_create;
pub mod microvm;
pub mod serve;
pub mod shell;
pub mod token;
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
