//! `hearth bench ingress`: what the ingress proxy adds. The same HTTP/1.1
//! requests go to a running microVM's app through its endpoint and through
//! a direct tunnel (the shim's, as the proxy itself uses); the figures are
//! medians, and the ratios are taken run by run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use hearth_protocol::{Event, StreamReceiver, StreamSender, CHAN_STDIO};
use hearth_shim::{ShimClient, VmDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bench::median;
use crate::paths;

/// Arguments of `hearth bench ingress`.
#[derive(Args)]
pub struct IngressArgs {
    /// The running microVM.
    microvm: String,
    /// Its endpoint token (`X-aws-proxy-auth`).
    #[arg(long)]
    token: String,
    /// The HTTP ingress listener.
    #[arg(long, default_value = "127.0.0.1:7080")]
    ingress: String,
    /// The endpoint domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// The app's port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A small request's path.
    #[arg(long, default_value = "/")]
    path: String,
    /// A large download's path.
    #[arg(long)]
    download_path: Option<String>,
    /// Runs per figure.
    #[arg(long, default_value_t = 21)]
    runs: usize,
}

/// One answer: time to the first byte, total time, bytes.
struct Answer {
    first_byte: Duration,
    total: Duration,
    bytes: usize,
}

/// Runs the benchmark.
pub async fn run(args: IngressArgs) -> Result<ExitCode> {
    let dir = VmDir::new(&paths::data_dir(), &args.microvm);
    let client = ShimClient::connect(&dir)
        .await
        .with_context(|| format!("connecting to {}'s shim", args.microvm))?;
    let host = format!("{}.{}", args.microvm, args.domain);
    let runs = args.runs.max(1);

    let mut proxied = Vec::new();
    let mut direct = Vec::new();
    for i in 0..runs {
        // Alternate which goes first, so that neither always warms the app.
        if i % 2 == 0 {
            proxied.push(through_proxy(&args, &host, &args.path).await?);
            direct.push(through_tunnel(&client, &args, &host, &args.path).await?);
        } else {
            direct.push(through_tunnel(&client, &args, &host, &args.path).await?);
            proxied.push(through_proxy(&args, &host, &args.path).await?);
        }
    }
    let ms = |answers: &[Answer]| {
        median(
            answers
                .iter()
                .map(|a| a.total.as_secs_f64() * 1e3)
                .collect(),
        )
    };
    let added = median(
        proxied
            .iter()
            .zip(&direct)
            .map(|(p, d)| (p.total.as_secs_f64() - d.total.as_secs_f64()) * 1e3)
            .collect(),
    );
    println!(
        "hearth bench ingress: {runs} runs, GET {} on port {}, medians",
        args.path, args.port
    );
    println!("  through the endpoint       {:>8.2} ms", ms(&proxied));
    println!("  direct tunnel              {:>8.2} ms", ms(&direct));
    println!("  added by the proxy         {added:>8.2} ms");

    if let Some(path) = &args.download_path {
        let mut proxied = Vec::new();
        let mut direct = Vec::new();
        for _ in 0..runs.min(5) {
            proxied.push(through_proxy(&args, &host, path).await?);
            direct.push(through_tunnel(&client, &args, &host, path).await?);
        }
        let rate = |a: &Answer| a.bytes as f64 / 1048576.0 / a.total.as_secs_f64();
        let ratio = median(
            proxied
                .iter()
                .zip(&direct)
                .map(|(p, d)| rate(p) / rate(d))
                .collect(),
        );
        let mib = proxied.first().map_or(0.0, |a| a.bytes as f64 / 1048576.0);
        println!(
            "  download {mib:.0} MiB, endpoint   {:>8.1} MiB/s",
            median(proxied.iter().map(rate).collect())
        );
        println!(
            "  download {mib:.0} MiB, direct     {:>8.1} MiB/s",
            median(direct.iter().map(rate).collect())
        );
        println!("  endpoint / direct          {ratio:>8.2}");
        let first = median(
            proxied
                .iter()
                .map(|a| a.first_byte.as_secs_f64() * 1e3)
                .collect(),
        );
        println!("  endpoint first byte        {first:>8.2} ms");
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET path` through the endpoint on a new connection.
async fn through_proxy(args: &IngressArgs, host: &str, path: &str) -> Result<Answer> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(&args.ingress)
        .await
        .with_context(|| format!("connecting to {}", args.ingress))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-aws-proxy-auth: {}\r\nX-aws-proxy-port: {}\r\n\
         Connection: close\r\n\r\n",
        args.token, args.port
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut first_byte = None;
    let mut bytes = 0;
    let mut head = Vec::new();
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| started.elapsed());
        if head.len() < 16 {
            head.extend_from_slice(&buf[..n.min(16)]);
        }
        bytes += n;
    }
    check_ok(&head)?;
    Ok(Answer {
        first_byte: first_byte.unwrap_or_default(),
        total: started.elapsed(),
        bytes,
    })
}

/// `GET path` through a new tunnel from the shim.
async fn through_tunnel(
    client: &ShimClient,
    args: &IngressArgs,
    host: &str,
    path: &str,
) -> Result<Answer> {
    let started = Instant::now();
    let (tx, mut rx): (StreamSender, StreamReceiver) = client.tunnel(args.port).await?.split();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tx.data(CHAN_STDIO, request.as_bytes()).await?;
    let mut first_byte = None;
    let mut bytes = 0;
    let mut head = Vec::new();
    loop {
        match rx.recv().await {
            Event::Data { bytes: data, .. } => {
                first_byte.get_or_insert_with(|| started.elapsed());
                if head.len() < 16 {
                    head.extend_from_slice(&data[..data.len().min(16)]);
                }
                bytes += data.len();
            }
            Event::Eof { .. } | Event::Closed { .. } => break,
            Event::Control(_) => {}
        }
    }
    tx.close(None);
    check_ok(&head)?;
    Ok(Answer {
        first_byte: first_byte.unwrap_or_default(),
        total: started.elapsed(),
        bytes,
    })
}

fn check_ok(head: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(head);
    ensure!(
        text.starts_with("HTTP/1.1 200"),
        "the app answered {text:?}"
    );
    Ok(())
}
