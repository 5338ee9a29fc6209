//! `hearth image`: build images from a Dockerfile and its artifacts (into
//! microVM snapshots), list and remove them, seed the base-image store,
//! start a microVM from a built image, and measure builds; `create` has
//! `hearth serve` build one instead (see [`super::image_create`]).
//!
//! Local builds run without a server: progress goes to stderr (a live
//! display on a terminal, plain log lines otherwise), the whole log is kept
//! in the version's `build.log`, and the version's directory is printed on
//! stdout at the end.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hearth_builder::artifact::{ArtifactSource, S3Settings};
use hearth_builder::events::{self, BuildEvent};
use hearth_builder::image::hooks::Hooks;
use hearth_builder::image::layout::{self, ImageLayout, ImageRecord};
use hearth_builder::image::{BuiltImage, ImageBuildRequest, ImageBuilder};
use hearth_builder::oci::RegistryConfig;
use hearth_builder::seed;
use hearth_builder::store::ImageStore;
use hearth_shim::launch::{self, Host};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::paths;

/// Operations on images.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build a new image version from a directory, a zip or s3://bucket/key
    /// with a Dockerfile at its root; prints the version's directory.
    Build(BuildArgs),
    /// List built image versions.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an image version (NAME:VERSION) or every version (NAME).
    Rm {
        /// The image.
        reference: String,
    },
    /// Seed the base-image store with debian:12 (debootstrap) and busybox,
    /// so that builds need no registry; does nothing for what is there.
    Seed {
        /// The Debian mirror (default: the host's APT sources).
        #[arg(long)]
        mirror: Option<String>,
        /// Seed busybox only.
        #[arg(long)]
        no_debian: bool,
    },
    /// Upload a directory or zip with a Dockerfile at its root to `hearth
    /// serve` and have it build a new image version there; follows the build.
    Create(super::image_create::CreateArgs),
    /// List the versions `hearth serve` has of an image.
    Versions(super::image_create::VersionsArgs),
    /// Start a microVM from a built image (NAME or NAME:VERSION, the newest
    /// by default) and print its id; drive it with `hearth vm`.
    Run {
        /// The image.
        reference: String,
    },
    /// Measure first (cold cache) and cached builds of a directory.
    Bench(BenchArgs),
}

/// Arguments of `hearth image build`.
#[derive(Args, Clone)]
pub struct BuildArgs {
    /// The code artifact: a directory, a zip, or s3://bucket/key.
    source: String,
    /// The image's name.
    #[arg(long)]
    name: String,
    /// A build argument (`KEY=value`, repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// An environment variable for the app (`KEY=value`, repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The port the image's hooks listen on.
    #[arg(long)]
    hooks_port: Option<u16>,
    /// Wait for the `ready` hook to answer 200 before the snapshot.
    #[arg(long)]
    ready: bool,
    /// Validate the snapshot in a test microVM through the `validate` hook.
    #[arg(long)]
    validate: bool,
    /// How long the app may take to become ready, in seconds (1-3600).
    #[arg(long, default_value_t = 30)]
    ready_timeout: u32,
    /// How long the `validate` hook may take to answer 200, in seconds.
    #[arg(long, default_value_t = 30)]
    validate_timeout: u32,
    /// `minimumMemoryInMiB`: the microVM gets four times as much.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Run every step, ignoring the build cache.
    #[arg(long)]
    no_cache: bool,
    /// Extra OS capabilities for the app (`ALL` is the only one): without
    /// it the app gets Docker's default set.
    #[arg(long, value_parser = ["ALL"])]
    additional_os_capabilities: Vec<String>,
    /// The most bytes the unpacked code artifact may hold.
    #[arg(long, default_value_t = hearth_builder::artifact::DEFAULT_MAX_BYTES)]
    max_artifact_bytes: u64,
    /// Registry credentials: a Docker config.json with `auths`.
    #[arg(long, env = "HEARTH_REGISTRY_AUTH")]
    registry_auth: Option<PathBuf>,
    /// The S3-compatible endpoint for s3:// artifacts (keys from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "HEARTH_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
}

/// Arguments of `hearth image bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// The build: its source and options, as for `hearth image build`.
    #[command(flatten)]
    build: BuildArgs,
    /// How many cold and cached build pairs to run.
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

/// Runs an image command.
///
/// # Errors
///
/// Fails with the reason a build or an operation failed.
pub async fn run(command: ImageCommand) -> Result<ExitCode> {
    match command {
        ImageCommand::Build(args) => build(&args).await,
        ImageCommand::Create(args) => super::image_create::create(args).await,
        ImageCommand::Versions(args) => super::image_create::versions(args).await,
        ImageCommand::Ls { json } => ls(json),
        ImageCommand::Rm { reference } => rm(&reference),
        ImageCommand::Seed { mirror, no_debian } => seed(mirror.as_deref(), no_debian).await,
        ImageCommand::Run { reference } => run_image(&reference).await,
        ImageCommand::Bench(args) => bench(args).await,
    }
}

fn layout() -> ImageLayout {
    ImageLayout::new(paths::data_dir())
}

fn builder(args: &BuildArgs, data: &Path) -> Result<ImageBuilder> {
    let exe = std::env::current_exe().context("locating the hearth binary")?;
    let mut builder = ImageBuilder::new(data, paths::assets_dir(), exe);
    builder.artifact_limits.max_bytes = args.max_artifact_bytes;
    if let Some(path) = &args.registry_auth {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading registry credentials {}", path.display()))?;
        builder.registry = RegistryConfig::from_docker_config(&text)?;
    }
    builder.s3 = args.s3_endpoint.as_ref().map(|endpoint| S3Settings {
        endpoint: endpoint.clone(),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| String::from("us-east-1")),
        credentials: match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(id), Ok(secret)) => Some((id, secret)),
            _ => None,
        },
        allow_http: endpoint.starts_with("http://"),
    });
    Ok(builder)
}

fn request(args: &BuildArgs) -> Result<ImageBuildRequest> {
    let artifact = ArtifactSource::parse(&args.source)?;
    let mut request = ImageBuildRequest::new(args.name.clone(), artifact);
    request.build_args = pairs(&args.build_args, "--build-arg")?
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    request.env = pairs(&args.env, "--env")?;
    request.minimum_memory_mib = args.memory;
    request.no_cache = args.no_cache;
    request.all_capabilities = args.additional_os_capabilities.iter().any(|c| c == "ALL");

    let mut hooks = Hooks {
        port: args.hooks_port,
        ..Hooks::default()
    };
    hooks.ready.enabled = args.ready;
    hooks.ready.timeout_secs = args.ready_timeout;
    hooks.validate.enabled = args.validate;
    hooks.validate.timeout_secs = args.validate_timeout;
    request.hooks = hooks;
    Ok(request)
}

fn pairs(items: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("{flag} {item:?} is not KEY=VALUE"),
        })
        .collect()
}

async fn build(args: &BuildArgs) -> Result<ExitCode> {
    let builder = builder(args, &paths::data_dir())?;
    let built = build_with_progress(&builder, &request(args)?).await?;
    println!("{}", built.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs a build while showing its progress on stderr.
async fn build_with_progress(
    builder: &ImageBuilder,
    request: &ImageBuildRequest,
) -> Result<BuiltImage> {
    let (tx, rx) = mpsc::unbounded_channel();
    let display = tokio::spawn(show_progress(rx));
    let result = builder.build(request, Some(tx)).await;
    let _ = display.await;
    result.context("image build failed")
}

/// Shows events as they come: a live line on a terminal, log lines
/// otherwise.
async fn show_progress(mut rx: mpsc::UnboundedReceiver<BuildEvent>) {
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} [{elapsed:>4}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });

    while let Some(event) = rx.recv().await {
        let line = events::render(&event);
        match &bar {
            Some(bar) => {
                match &event {
                    BuildEvent::StepStarted { .. } | BuildEvent::PhaseStarted { .. } => {
                        bar.set_message(line.clone());
                    }
                    BuildEvent::Note { message } => bar.set_message(message.clone()),
                    _ => {}
                }
                bar.println(line);
            }
            None => {
                let secs = started.elapsed().as_secs_f64();
                eprintln!("[{secs:7.1}s] {line}");
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn ls(json: bool) -> Result<ExitCode> {
    let records = layout().list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>7} {:<36} {:>8} {:>10} {:>10} {:>9}",
        "NAME", "VERSION", "BASE", "MEMORY", "SNAPSHOT", "DISK", "CODE"
    );
    for record in records {
        println!(
            "{:<24} {:>7} {:<36} {:>6}Mi {:>10} {:>10} {:>9}",
            record.name,
            record.version,
            record.base.id,
            record.resources.memory_mib,
            human(record.sizes.memory_snapshot_bytes),
            human(record.sizes.disk_bytes),
            human(record.sizes.code_bytes),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

fn rm(reference: &str) -> Result<ExitCode> {
    let (name, version) = layout::parse_reference(reference)?;
    for version in layout().remove(&name, version)? {
        println!("removed {name}:{version}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn seed(mirror: Option<&str>, no_debian: bool) -> Result<ExitCode> {
    let store = ImageStore::open(layout().base_images())?;
    let busybox = seed::seed_busybox(&store)?;
    eprintln!("{} ready ({})", busybox.reference, busybox.source);
    if !no_debian {
        let started = Instant::now();
        let debian = seed::seed_debian(&store, "debian:12", mirror).await?;
        eprintln!(
            "{} ready ({}, {:.0} s)",
            debian.reference,
            debian.source,
            started.elapsed().as_secs_f64()
        );
    }
    println!("{}", store.root().display());
    Ok(ExitCode::SUCCESS)
}

/// The host files that restore a built image: its own base's kernel and
/// initramfs.
fn image_host(record: &ImageRecord) -> Result<Host> {
    Ok(Host {
        data: paths::data_dir(),
        kernel: record.base.kernel.clone(),
        initramfs: record.base.initramfs.clone(),
        accel_cache: paths::accel_cache(),
        exe: std::env::current_exe().context("locating the hearth binary")?,
    })
}

async fn run_image(reference: &str) -> Result<ExitCode> {
    let (name, version) = layout::parse_reference(reference)?;
    let layout = layout();
    let record = layout.get(&name, version)?;
    let snapshot = layout.version_dir(&name, record.version).join("snapshot");
    let dir = launch::restore(&image_host(&record)?, &snapshot)
        .await
        .with_context(|| format!("starting a microVM from {name}:{}", record.version))?;
    println!("{}", dir.id());
    Ok(ExitCode::SUCCESS)
}

/// Builds the same source cold (an empty step cache) and then cached, in a
/// scratch data directory that shares this one's base-image store.
async fn bench(args: BenchArgs) -> Result<ExitCode> {
    let data = paths::data_dir();
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for run in 1..=args.runs.max(1) {
        let scratch = tempfile::Builder::new()
            .prefix("bench-")
            .tempdir_in(&data)
            .context("making the bench's data directory")?;
        let store = ImageLayout::new(&data).base_images();
        std::fs::create_dir_all(&store)?;
        std::os::unix::fs::symlink(&store, scratch.path().join("base-images"))?;
        let builder = builder(&args.build, scratch.path())?;
        let request = request(&args.build)?;

        for (label, times) in [("first", &mut cold), ("cached", &mut cached)] {
            let started = Instant::now();
            let built = build_with_progress(&builder, &request).await?;
            let secs = started.elapsed().as_secs_f64();
            let record = &built.record;
            let hits = record
                .steps
                .iter()
                .filter(|s| s.cache == hearth_builder::events::CacheStatus::Hit)
                .count();
            eprintln!(
                "run {run}: {label} build {secs:.1} s (Dockerfile {:.1} s, snapshot {:.1} s, \
                 {hits} cache hits)",
                record.durations_ms.dockerfile as f64 / 1000.0,
                record.durations_ms.snapshot as f64 / 1000.0,
            );
            times.push(secs);
        }
    }

    let (cold, cached) = (median(&mut cold), median(&mut cached));
    println!("first build:  {cold:.1} s (median of {})", args.runs.max(1));
    println!(
        "cached build: {cached:.1} s (median of {})",
        args.runs.max(1)
    );
    println!("cached / first: {:.2}", cached / cold);
    Ok(ExitCode::SUCCESS)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
