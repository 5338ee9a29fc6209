//! `hearth serve`: the Lambda MicroVMs API, the artifact store's S3 API,
//! the control plane and the ingress proxy (microVM endpoints over HTTP and
//! HTTPS), in one process.
//!
//! On first start it makes the API key pair in the data directory and adds
//! the `hearth` profile to the user's AWS config files (the ones
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name), so that
//! `aws --profile hearth --endpoint-url http://127.0.0.1:7070 lambda-microvms …`
//! and `aws --profile hearth --endpoint-url http://127.0.0.1:7071 s3 …` work
//! at once. It stops gracefully on SIGTERM or SIGINT; microVMs keep running
//! under their shims and are found again on the next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hearth_api::{router, serve, ApiConfig, AwsConfigFiles, Credentials, DEFAULT_PROFILE};
use hearth_builder::image::ImageBuilder;
use hearth_builder::oci::RegistryConfig;
use hearth_control::artifacts::serve_s3;
use hearth_control::{ControlConfig, EndpointConfig, HearthControl, ShimNode};
use hearth_ingress::{
    serve_http, serve_https, server_config, ControlBackend, IngressConfig, Proxy, TlsFiles,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::paths;
use crate::pipeline::BuilderPipeline;

/// Arguments of `hearth serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Where the artifact store's S3 API listens.
    #[arg(long, default_value = "127.0.0.1:7071")]
    s3_listen: SocketAddr,
    /// The data directory (default: $HEARTH_DATA, else /var/lib/hearth as
    /// root and ~/.local/share/hearth otherwise).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The region requests are signed for and ARNs name.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The account ARNs name.
    #[arg(long, default_value = "000000000000")]
    account: String,
    /// The domain of microVM endpoints (`http://<id>.<domain>:<port>`).
    #[arg(long, default_value = "localhost")]
    endpoint_domain: String,
    /// The port of microVM endpoints in their URLs (default: the HTTP
    /// ingress listener's port).
    #[arg(long)]
    endpoint_port: Option<u16>,
    /// Where the ingress proxy listens for HTTP (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:7080")]
    ingress_listen: SocketAddr,
    /// Where the ingress proxy listens for HTTPS.
    #[arg(long, default_value = "127.0.0.1:7443")]
    ingress_tls_listen: SocketAddr,
    /// The HTTPS certificate chain (PEM); default: a self-signed one kept
    /// in the data directory.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The HTTPS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long a request waits for a suspended microVM to wake, in seconds.
    #[arg(long, default_value_t = 30)]
    wake_timeout_seconds: u64,
    /// The most memory a guest gets, in MiB, whatever its size class says
    /// (small guests for tests under TCG).
    #[arg(long)]
    guest_memory_cap_mib: Option<u32>,
    /// The most memory all running guests may hold together, in MiB.
    #[arg(long)]
    memory_budget_mib: Option<u64>,
    /// Registry credentials for Dockerfiles whose FROM names a registry: a
    /// Docker config.json with `auths`.
    #[arg(long, env = "HEARTH_REGISTRY_AUTH")]
    registry_auth: Option<PathBuf>,
    /// Do not add the `hearth` profile to the AWS config files.
    #[arg(long)]
    no_profile: bool,
    /// Also stop when standard input closes (for supervisors and tests).
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

/// Runs the server until a signal stops it.
pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let data = args.data.clone().unwrap_or_else(paths::data_dir);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let credentials = Credentials::load_or_create(&data)?;
    if !args.no_profile {
        AwsConfigFiles::from_env()?
            .install_profile(DEFAULT_PROFILE, &credentials, &args.region)
            .context("installing the hearth AWS profile")?;
    }

    let assets =
        std::env::var_os("HEARTH_ASSETS").map_or_else(|| data.join("assets"), PathBuf::from);
    let exe = std::env::current_exe().context("locating the hearth binary")?;
    let mut config = ControlConfig::new(data.clone(), assets, exe.clone());
    config.region = args.region.clone();
    config.account = args.account.clone();
    let ingress_listener = bind(args.ingress_listen, "the HTTP ingress").await?;
    let ingress_tls_listener = bind(args.ingress_tls_listen, "the HTTPS ingress").await?;
    let ingress_port = ingress_listener.local_addr()?.port();
    config.endpoint = EndpointConfig {
        domain: args.endpoint_domain.clone(),
        port: args.endpoint_port.unwrap_or(ingress_port),
    };
    let tls_files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            let files = TlsFiles::in_data_dir(&data);
            files
                .ensure_self_signed(&args.endpoint_domain)
                .context("making the ingress certificate")?;
            files
        }
    };
    let tls = server_config(&tls_files).context("loading the ingress certificate")?;
    config.guest_memory_cap_mib = args.guest_memory_cap_mib;
    config.memory_budget_mib = args.memory_budget_mib;
    if !config.assets_present() {
        tracing::warn!(assets = %config.assets_dir.display(), "guest assets missing: builds and microvms will fail (run scripts/setup.sh)");
    }

    // The rules that keep guests off the host and each other, before any
    // guest runs.
    if let Err(error) = hearth_net::HostNetwork::default().install().await {
        tracing::warn!(error = %error, "cannot install the host's network rules: microvms will not start");
    }

    let artifacts = config.artifacts_dir();
    let node = Arc::new(ShimNode::new(config.vm_host()));
    let mut builder = ImageBuilder::new(&data, &config.assets_dir, &exe);
    if let Some(path) = &args.registry_auth {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading registry credentials {}", path.display()))?;
        builder.registry = RegistryConfig::from_docker_config(&text)?;
    }
    let pipeline = Arc::new(BuilderPipeline::new(builder));
    let control = HearthControl::open(config, pipeline, node.clone()).await?;
    for vm_id in node.remove_orphan_networks().await {
        tracing::info!(vm_id, "removed the network of a vm that no longer runs");
    }
    tracing::info!(base_image = control.base_image_name(), data = %data.display(), "control plane open");

    let api_config =
        ApiConfig::new(&args.region, credentials.clone()).with_token_store(control.store());
    let app = router(api_config, Arc::new(control.clone()));
    let api_listener = bind(args.listen, "the API").await?;
    let s3_listener = bind(args.s3_listen, "the S3 API").await?;
    println!("api http://{}", api_listener.local_addr()?);
    println!("s3 http://{}", s3_listener.local_addr()?);
    println!("ingress http://{}", ingress_listener.local_addr()?);
    println!("ingress-tls https://{}", ingress_tls_listener.local_addr()?);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop_signal(args.exit_on_stdin_eof).await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
    });

    let api = serve(api_listener, app, stopped(stop_rx.clone()));
    let s3 = serve_s3(
        s3_listener,
        &artifacts,
        &credentials.access_key_id,
        &credentials.secret_access_key,
        stopped(stop_rx.clone()),
    );
    let proxy = Arc::new(Proxy::new(
        Arc::new(ControlBackend::new(control.clone())),
        IngressConfig {
            domain: args.endpoint_domain.clone(),
            wake_timeout: Duration::from_secs(args.wake_timeout_seconds),
            ..IngressConfig::default()
        },
    ));
    let ingress = serve_http(ingress_listener, proxy.clone(), stopped(stop_rx.clone()));
    let ingress_tls = serve_https(ingress_tls_listener, tls, proxy, stopped(stop_rx.clone()));
    let (api, s3, (), ()) = tokio::join!(api, s3, ingress, ingress_tls);
    control.shutdown().await;
    api.context("serving the API")?;
    s3.context("serving the S3 API")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} to {addr}"))
}

/// Completes once the stop flag is set.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Completes on SIGTERM, SIGINT or, if asked, the end of standard input.
async fn stop_signal(stdin_eof: bool) {
    let stdin = async {
        if !stdin_eof {
            return std::future::pending::<()>().await;
        }
        // A plain thread: a read blocked in tokio's blocking pool would hold
        // up the runtime's shutdown until stdin closes.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
        let _ = rx.await;
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
