//! The `hearth` command: every role of hearth in one binary.
//!
//! `hearth vm …` drives single VMs through their shims, `hearth shell` and
//! `hearth cp` reach into a microVM's app container, `hearth bench …`
//! measures, `hearth serve` runs the Lambda MicroVMs API and the control
//! plane, `hearth run`, `ps`, `rm`, `suspend`, `resume`, `logs` and
//! `hearth image create` drive a server over its API, and the hidden
//! `hearth shim DIR` is the per-VM supervisor that `hearth vm boot` and
//! `hearth vm restore` start.

#![forbid(unsafe_code)]

mod cmd;
mod paths;
mod pipeline;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// hearth: microVMs from Dockerfiles, suspended when idle, resumed on request.
#[derive(Parser)]
#[command(name = "hearth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot, drive, snapshot and restore single VMs.
    #[command(subcommand)]
    Vm(cmd::vm::VmCommand),
    /// Measure hearth on this machine.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Build, list and remove images (Dockerfile → microVM snapshot).
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Open an interactive shell in a microVM's app container.
    Shell(cmd::shell::ShellArgs),
    /// Copy a file into or out of a microVM (`ID:/path` names its side).
    Cp(cmd::shell::CpArgs),
    /// Serve the Lambda MicroVMs API, the artifact store and the control plane.
    Serve(cmd::serve::ServeArgs),
    /// Run a microVM from an image (through `hearth serve`) and print its id.
    Run(cmd::microvm::RunArgs),
    /// List microVMs (through `hearth serve`).
    Ps(cmd::microvm::PsArgs),
    /// Terminate microVMs (through `hearth serve`).
    Rm(cmd::microvm::IdsArgs),
    /// Suspend microVMs, memory and disk kept (through `hearth serve`).
    Suspend(cmd::microvm::IdsArgs),
    /// Resume suspended microVMs (through `hearth serve`).
    Resume(cmd::microvm::IdsArgs),
    /// Suspend every RUNNING microVM and wait (before the host shuts down).
    Drain(cmd::drain::DrainArgs),
    /// Print a microVM's app output (standard output and error); with
    /// --json, one JSON object per line of output on standard output:
    /// {"stream":"stdout"|"stderr","line":"..."}.
    Logs(cmd::microvm::LogsArgs),
    /// Print a token for a microVM's endpoint (its `X-aws-proxy-auth` header).
    Token(cmd::token::TokenArgs),
    /// Run the supervisor of the VM in DIR (started by `hearth vm`).
    #[command(hide = true)]
    Shim {
        /// The VM's directory.
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_daemon = matches!(cli.command, Command::Shim { .. } | Command::Serve(_));
    init_tracing(if is_daemon { "info" } else { "warn" });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Vm(command) => cmd::vm::run(command).await,
            Command::Bench(command) => cmd::bench::run(command).await,
            Command::Image(command) => cmd::image::run(command).await,
            Command::Shell(args) => cmd::shell::run(args).await,
            Command::Cp(args) => cmd::shell::cp(args).await,
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Run(args) => cmd::microvm::run(args).await,
            Command::Ps(args) => cmd::microvm::ps(args).await,
            Command::Rm(args) => cmd::microvm::rm(args).await,
            Command::Suspend(args) => cmd::microvm::suspend(args).await,
            Command::Resume(args) => cmd::microvm::resume(args).await,
            Command::Logs(args) => cmd::microvm::logs(args).await,
            Command::Token(args) => cmd::token::run(args).await,
            Command::Drain(args) => cmd::drain::run(args).await,
            Command::Shim { dir } => cmd::shim(dir).await,
        }
    });

    // A blocking read of standard input must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hearth: {}", chain(&err));
            ExitCode::from(1)
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// An error and its causes on one line.
pub(crate) fn chain(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
