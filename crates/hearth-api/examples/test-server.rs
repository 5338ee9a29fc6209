//! Serves the API on 127.0.0.1 over the in-memory test double of the
//! control plane: the wire layer alone, without VMs. The conformance suite
//! in `tests/conformance` (which drives the real `hearth serve`) uses its
//! `--dump-model` to compare the hand-written tables with the model.
//!
//! ```text
//! test-server --data-dir DIR [--port N] [--print-port] [--region R]
//!             [--install-profile] [--exit-on-stdin-eof]
//! test-server --dump-model
//! ```
//!
//! `--print-port` writes `PORT=<n>` on stdout once the socket listens.
//! `--install-profile` adds the `hearth` profile to the files that
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name. `--dump-model`
//! prints the operation and shape tables as JSON, for comparison with the
//! model.

#![forbid(unsafe_code)]

#[path = "../tests/support/fake_control/mod.rs"]
#[allow(dead_code)]
mod fake_control;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use hearth_api::error::MODELED_ERRORS;
use hearth_api::validation::describe_inputs;
use hearth_api::{
    router, serve, ApiConfig, AwsConfigFiles, Credentials, Operation, DEFAULT_PROFILE,
};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// The command line.
#[derive(Debug, Default)]
struct Args {
    port: u16,
    print_port: bool,
    region: Option<String>,
    data_dir: Option<PathBuf>,
    install_profile: bool,
    exit_on_stdin_eof: bool,
    dump_model: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => args.port = value()?.parse().context("--port must be a number")?,
            "--print-port" => args.print_port = true,
            "--region" => args.region = Some(value()?),
            "--data-dir" => args.data_dir = Some(PathBuf::from(value()?)),
            "--install-profile" => args.install_profile = true,
            "--exit-on-stdin-eof" => args.exit_on_stdin_eof = true,
            "--dump-model" => args.dump_model = true,
            other => bail!("unknown argument: {other}"),
        }
    }
    Ok(args)
}

/// The operation table, the input shapes and the error codes as JSON.
fn dump_model() -> serde_json::Value {
    let operations: serde_json::Map<_, _> = Operation::ALL
        .iter()
        .map(|op| {
            let spec = op.spec();
            let http = json!({
                "method": spec.method, "requestUri": spec.uri, "responseCode": spec.status,
                "input": spec.input.name,
            });
            (spec.name.to_owned(), http)
        })
        .collect();
    let errors: serde_json::Map<_, _> = MODELED_ERRORS
        .iter()
        .map(|(code, status)| ((*code).to_owned(), json!(status)))
        .collect();
    json!({ "operations": operations, "shapes": describe_inputs(), "errors": errors })
}

/// Completes on SIGINT, SIGTERM or, if asked, the end of stdin.
async fn shutdown_signal(stdin_eof: bool) {
    let stdin = async {
        if stdin_eof {
            let mut buf = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
        () = stdin => {}
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.dump_model {
        println!("{}", serde_json::to_string_pretty(&dump_model())?);
        return Ok(());
    }

    let region = args.region.unwrap_or_else(|| "us-east-1".to_owned());
    let data_dir = args.data_dir.context("--data-dir is required")?;
    let credentials = Credentials::load_or_create(&data_dir)?;
    if args.install_profile {
        AwsConfigFiles::from_env()?.install_profile(DEFAULT_PROFILE, &credentials, &region)?;
    }

    let control = Arc::new(fake_control::FakeControl::new(&region));
    let app = router(ApiConfig::new(region, credentials), control);

    // Loopback only: the suite and nothing else talks to this server.
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
            .await
            .context("cannot bind 127.0.0.1")?;
    if args.print_port {
        println!("PORT={}", listener.local_addr()?.port());
    }
    serve(listener, app, shutdown_signal(args.exit_on_stdin_eof)).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("test-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}
