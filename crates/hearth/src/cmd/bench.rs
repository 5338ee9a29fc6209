//! `hearth bench`: figures measured on this machine, as medians of several
//! runs, with ratios taken within the same run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use hearth_shim::launch::{self, BootSpec, RootSource};
use hearth_shim::ShimClient;

use super::vm::host;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Cold boot to agent-ready, snapshot, and restore to agent-ready.
    Vm {
        /// Root filesystem directory to boot (default: the busybox one that
        /// scripts/setup.sh makes).
        #[arg(long)]
        rootfs: Option<PathBuf>,
        /// Runs per figure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 512)]
        memory: u32,
        /// VMs with a network (a namespace each, as microVMs have), and the
        /// time to make and remove a namespace (needs root).
        #[arg(long)]
        net: bool,
    },
    /// RunMicrovm to RUNNING, suspend, resume and ten runs at once, through
    /// the API of a `hearth serve` that the benchmark starts and stops.
    Api {
        /// Runs per figure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 256)]
        memory: u32,
    },
    /// The ingress proxy against a direct tunnel to the same guest port:
    /// request latency and download throughput.
    Ingress(super::bench_ingress::IngressArgs),
}

/// Runs a benchmark.
pub async fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Vm {
            rootfs,
            runs,
            memory,
            net,
        } => vm(rootfs, runs.max(1), memory, net).await,
        BenchCommand::Api { runs, memory } => super::bench_api::api(runs.max(1), memory).await,
        BenchCommand::Ingress(args) => super::bench_ingress::run(args).await,
    }
}

struct Run {
    boot: Duration,
    exec: Duration,
    shell_open: Duration,
    keystroke: Duration,
    snapshot: Duration,
    paused: Duration,
    memory_bytes: u64,
    disk_bytes: u64,
    restore: Duration,
}

async fn vm(rootfs: Option<PathBuf>, runs: usize, memory: u32, net: bool) -> Result<ExitCode> {
    let host = host()?;
    let rootfs = rootfs.unwrap_or_else(|| host.data.join("rootfs/busybox"));
    let scratch = tempfile::Builder::new().prefix("hearth-bench-").tempdir()?;
    let mut results = Vec::new();

    for i in 0..runs {
        let spec = BootSpec {
            root: RootSource::Dir(rootfs.clone()),
            app: None,
            vcpus: 1,
            memory_mib: memory,
            disk_bytes: 512 << 20,
            network: net.then_some(hearth_net::Egress::Internet),
        };
        let started = Instant::now();
        let dir = launch::boot(&host, spec).await.context("boot")?;
        let boot = started.elapsed();

        let client = ShimClient::connect(&dir).await?;
        let exec = exec_round_trip(&client).await?;
        let (shell_open, keystroke) = shell_figures(ShimClient::connect(&dir).await?).await?;

        let snap = scratch.path().join(format!("snap-{i}"));
        let started = Instant::now();
        let taken = client.snapshot(&snap, true).await?;
        let snapshot = started.elapsed();
        let _ = std::fs::remove_dir_all(dir.root());

        let started = Instant::now();
        let restored = launch::restore(&host, &snap).await.context("restore")?;
        let restore = started.elapsed();
        ShimClient::connect(&restored).await?.stop().await?;
        let _ = std::fs::remove_dir_all(restored.root());
        let _ = std::fs::remove_dir_all(&snap);

        eprintln!(
            "run {}: boot {:?}, snapshot {:?}, restore {:?}",
            i + 1,
            boot,
            snapshot,
            restore
        );
        results.push(Run {
            boot,
            exec,
            shell_open,
            keystroke,
            snapshot,
            paused: Duration::from_millis(taken.paused_ms),
            memory_bytes: taken.memory_bytes,
            disk_bytes: taken.disk_bytes,
            restore,
        });
    }

    let ms = |f: fn(&Run) -> Duration| {
        median(results.iter().map(|r| f(r).as_secs_f64() * 1e3).collect())
    };
    let mib =
        |f: fn(&Run) -> u64| median(results.iter().map(|r| f(r) as f64 / 1048576.0).collect());
    let ratio = median(
        results
            .iter()
            .map(|r| r.restore.as_secs_f64() / r.boot.as_secs_f64())
            .collect(),
    );
    let network = match net {
        true => Some(network_setup(runs).await?),
        false => None,
    };
    let with = if net { ", with networks" } else { "" };
    println!("hearth bench vm: {runs} runs, {memory} MiB guest{with}, medians");
    println!("  cold boot to agent-ready   {:>8.0} ms", ms(|r| r.boot));
    println!("  exec round trip (true)     {:>8.1} ms", ms(|r| r.exec));
    println!(
        "  shell open to prompt       {:>8.1} ms",
        ms(|r| r.shell_open)
    );
    println!(
        "  shell keystroke echo       {:>8.1} ms",
        ms(|r| r.keystroke)
    );
    let echo_ratio = median(
        results
            .iter()
            .map(|r| r.keystroke.as_secs_f64() / r.exec.as_secs_f64())
            .collect(),
    );
    println!("  keystroke echo / exec      {:>8.2}", echo_ratio);
    println!(
        "  snapshot (total)           {:>8.0} ms",
        ms(|r| r.snapshot)
    );
    println!("  snapshot (VM paused)       {:>8.0} ms", ms(|r| r.paused));
    println!(
        "  snapshot memory            {:>8.1} MiB",
        mib(|r| r.memory_bytes)
    );
    println!(
        "  snapshot disk              {:>8.1} MiB",
        mib(|r| r.disk_bytes)
    );
    println!("  restore to agent-ready     {:>8.0} ms", ms(|r| r.restore));
    println!("  restore / cold boot        {:>8.2}", ratio);
    if let Some((create, remove)) = network {
        println!("  vm network: make           {:>8.1} ms", create);
        println!("  vm network: remove         {:>8.1} ms", remove);
    }
    Ok(ExitCode::SUCCESS)
}

/// Median milliseconds to make a VM's network namespace (uplink, tap, NAT)
/// and to remove it.
async fn network_setup(runs: usize) -> Result<(f64, f64)> {
    use hearth_net::{Egress, GuestLink, HostNetwork, VmNet};

    let host = HostNetwork::default();
    host.ensure().await.context("the host's network rules")?;
    let (mut made, mut removed) = (Vec::new(), Vec::new());
    for i in 0..runs.max(5) {
        let id = format!("bench-{}-{i}", std::process::id());
        let started = Instant::now();
        let net = VmNet::create_for(&host, &id, Egress::Internet, GuestLink::Tap)
            .await
            .context("making a vm network")?;
        made.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        net.destroy().await;
        removed.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(made), median(removed)))
}

/// The median time of running `true` in the guest over an open connection.
async fn exec_round_trip(client: &ShimClient) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..11 {
        let spec = hearth_protocol::ExecSpec {
            argv: vec!["true".to_owned()],
            ..Default::default()
        };
        let started = Instant::now();
        let status = client
            .exec(
                spec,
                None::<tokio::io::Empty>,
                &mut tokio::io::sink(),
                &mut tokio::io::sink(),
            )
            .await?;
        anyhow::ensure!(
            status.code == Some(0),
            "`true` failed in the guest: {status:?}"
        );
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(Duration::from_secs_f64(median(times)))
}

/// The shell's figures over its WebSocket (an in-process pipe): from opening
/// to the prompt's first byte, and the median keystroke-to-echo time.
async fn shell_figures(client: ShimClient) -> Result<(Duration, Duration)> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{protocol::Role, Message};

    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move { hearth_shim::shell::serve(server_io, &client).await });
    let started = Instant::now();
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    let resize = r#"{"type":"resize","cols":80,"rows":24}"#;
    ws.send(Message::text(resize)).await?;

    let next_output = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(anyhow::Error::new(err)),
            None => anyhow::bail!("the shell closed"),
        }
    };
    next_output(&mut ws).await?;
    let open = started.elapsed();

    let mut times = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        ws.send(Message::binary(b"x".to_vec())).await?;
        while !next_output(&mut ws).await?.contains(&b'x') {}
        times.push(started.elapsed().as_secs_f64());
    }
    ws.close(None).await?;
    server.await??;
    Ok((open, Duration::from_secs_f64(median(times))))
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
