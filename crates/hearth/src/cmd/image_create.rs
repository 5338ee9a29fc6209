//! `hearth image create`: an image version built by `hearth serve`; and
//! `hearth image versions`, an image's versions there.
//!
//! The code artifact (a directory, zipped here, or a zip) must have a
//! `Dockerfile` at its root. It is uploaded through the server's S3 API to
//! the bucket `hearth-images` (made if missing), then `CreateMicrovmImage`
//! (or `UpdateMicrovmImage` when the image exists) starts the build. The
//! command follows the version's state and, when the data directory is
//! this machine's, the build's log, until the build succeeds (exit 0,
//! `NAME:VERSION` on stdout) or fails (exit 1, the `stateReason` on
//! stderr).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth::client::Client;
use hearth_api::model::ImageConfig;
use hearth_api::model::{
    Capability, CodeArtifact, CreateMicrovmImageRequest, EnvironmentVariables,
    GetMicrovmImageInput, GetMicrovmImageVersionInput, HookState, Hooks,
    ListManagedMicrovmImagesInput, Logging, LoggingDisabled, MicrovmHooks, MicrovmImageHooks,
    MicrovmImageVersionState, MicrovmImageVersionSummary, Resources, UpdateMicrovmImageRequest,
};

use super::api::{age, print_json, print_table, ApiArgs};

/// The bucket the CLI uploads code artifacts to.
const BUCKET: &str = "hearth-images";

/// The build role when none is given (hearth assumes no roles).
const DEFAULT_BUILD_ROLE: &str = "arn:aws:iam::000000000000:role/hearth-build";

/// How often the build's state is polled.
const POLL: Duration = Duration::from_millis(700);

/// Arguments of `hearth image create`.
#[derive(Args)]
pub struct CreateArgs {
    /// The code artifact: a directory or a zip with a Dockerfile at its root.
    source: PathBuf,
    /// The image's name; a new version when it exists.
    #[arg(long)]
    name: String,
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
    #[arg(long)]
    ready_timeout: Option<i32>,
    /// Call these microVM hooks (run, resume, suspend, terminate; repeatable).
    #[arg(long = "hook", value_parser = ["run", "resume", "suspend", "terminate"])]
    hooks: Vec<String>,
    /// `minimumMemoryInMiB`: the microVM gets four times as much.
    #[arg(long)]
    memory: Option<i32>,
    /// An environment variable for the app (`KEY=value`, repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Extra OS capabilities for the app (`ALL` is the only one).
    #[arg(long, value_parser = ["ALL"])]
    additional_os_capabilities: Vec<String>,
    /// Turn the app's logs off (`hearth logs` then refuses).
    #[arg(long)]
    no_logs: bool,
    /// A description of the version.
    #[arg(long)]
    description: Option<String>,
    /// The managed base image (default: the server's first).
    #[arg(long)]
    base_image_arn: Option<String>,
    /// The role the build assumes.
    #[arg(long, default_value = DEFAULT_BUILD_ROLE)]
    build_role_arn: String,
    /// Return once the build has started instead of following it.
    #[arg(long)]
    no_wait: bool,
    /// Give up following the build after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `hearth image versions`.
#[derive(Args)]
pub struct VersionsArgs {
    /// The image's name or ARN.
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs `hearth image versions`: an image's versions, oldest first.
pub async fn versions(args: VersionsArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let mut versions = client.list_all_microvm_image_versions(&args.name).await?;
    versions.sort_by_key(|v| v.image_version.parse::<u64>().unwrap_or(u64::MAX));
    if args.api.json {
        print_json(&versions)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = hearth_api::model::Timestamp::now().unix_seconds();
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.image_version.clone(),
                v.state.to_string(),
                v.status.to_string(),
                age(now - v.created_at.unix_seconds()),
                v.state_reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["VERSION", "STATE", "STATUS", "AGE", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// The most characters of an image name (the model's `ImageName`).
const NAME_MAX: usize = 64;

/// Checks `--name` as the model's `ImageName` does (1 to 64 letters, digits,
/// `-` and `_`), before anything is zipped or uploaded; an image's ARN
/// (a new version of it) passes.
fn check_name(name: &str) -> Result<()> {
    if name.starts_with("arn:") {
        return Ok(());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.chars().count() > NAME_MAX || !name.chars().all(allowed) {
        bail!(
            "--name {name:?} is not a valid image name: 1 to {NAME_MAX} letters, digits, '-' or '_'"
        );
    }
    Ok(())
}

/// UpdateMicrovmImage when the image exists, else CreateMicrovmImage, with
/// the artifact at `uri`; returns the new version.
async fn create_or_update(args: &CreateArgs, client: &Client, uri: String) -> Result<String> {
    let config = image_config(args, client, uri).await?;
    let exists = match client
        .get_microvm_image(&GetMicrovmImageInput {
            image_identifier: args.name.clone(),
        })
        .await
    {
        Ok(_) => true,
        Err(error) if error.is_not_found() => false,
        Err(error) => return Err(error.into()),
    };
    let version = if exists {
        let request = UpdateMicrovmImageRequest {
            image_identifier: args.name.clone(),
            client_token: None,
            config,
        };
        client.update_microvm_image(&request).await?.image_version
    } else {
        let request = CreateMicrovmImageRequest {
            name: args.name.clone(),
            tags: None,
            client_token: None,
            config,
        };
        client.create_microvm_image(&request).await?.image_version
    };
    Ok(version)
}

/// Runs `hearth image create`.
pub async fn create(args: CreateArgs) -> Result<ExitCode> {
    check_name(&args.name)?;
    let zip = artifact_zip(&args.source)?;
    let client = args.api.client()?;

    let key = format!("{}/{}.zip", key_part(&args.name), unix_millis());
    client.ensure_bucket(BUCKET).await?;
    let uri = client.put_object(BUCKET, &key, zip).await?;
    eprintln!("uploaded {} to {uri}", args.source.display());

    let version = match create_or_update(&args, &client, uri.clone()).await {
        Ok(version) => version,
        Err(error) => {
            // Refused: the artifact would never be read; leave nothing behind.
            if let Err(cleanup) = client.delete_object(BUCKET, &key).await {
                eprintln!("hearth: cannot delete the refused artifact {uri}: {cleanup}");
            }
            return Err(error);
        }
    };
    eprintln!("building {} version {version}", args.name);

    let summary = if args.no_wait {
        get_version(&client, &args.name, &version).await?
    } else {
        follow(&client, &args, &version).await?
    };
    if args.api.json {
        print_json(&summary)?;
    }
    if summary.state == MicrovmImageVersionState::Failed {
        eprintln!(
            "hearth: the build of {}:{version} failed: {}",
            args.name,
            summary.state_reason.as_deref().unwrap_or("no reason given")
        );
        return Ok(ExitCode::from(1));
    }
    if !args.api.json {
        println!("{}:{version}", args.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// The version's configuration from the arguments.
async fn image_config(args: &CreateArgs, client: &Client, uri: String) -> Result<ImageConfig> {
    let base_image_arn = match &args.base_image_arn {
        Some(arn) => arn.clone(),
        None => client
            .list_managed_microvm_images(&ListManagedMicrovmImagesInput::default())
            .await?
            .items
            .into_iter()
            .next()
            .map(|image| image.image_arn)
            .context("the server offers no managed base image")?,
    };
    let env = pairs(&args.env)?;
    Ok(ImageConfig {
        base_image_arn,
        base_image_version: None,
        build_role_arn: args.build_role_arn.clone(),
        description: args.description.clone(),
        code_artifact: CodeArtifact::Uri(uri),
        logging: args
            .no_logs
            .then_some(Logging::Disabled(LoggingDisabled {})),
        egress_network_connectors: None,
        cpu_configurations: None,
        resources: args.memory.map(|mib| {
            vec![Resources {
                minimum_memory_in_mib: mib,
            }]
        }),
        additional_os_capabilities: (!args.additional_os_capabilities.is_empty())
            .then(|| vec![Capability::All]),
        hooks: hooks(args),
        environment_variables: (!env.is_empty()).then_some(env),
    })
}

/// The hooks the arguments enable, if any.
fn hooks(args: &CreateArgs) -> Option<Hooks> {
    let enabled = |on: bool| on.then_some(HookState::Enabled);
    let named = |name: &str| enabled(args.hooks.iter().any(|h| h == name));
    let image = (args.ready || args.validate).then(|| MicrovmImageHooks {
        ready: enabled(args.ready),
        ready_timeout_in_seconds: args.ready.then_some(args.ready_timeout).flatten(),
        validate: enabled(args.validate),
        validate_timeout_in_seconds: None,
    });
    let microvm = (!args.hooks.is_empty()).then(|| MicrovmHooks {
        run: named("run"),
        run_timeout_in_seconds: None,
        resume: named("resume"),
        resume_timeout_in_seconds: None,
        suspend: named("suspend"),
        suspend_timeout_in_seconds: None,
        terminate: named("terminate"),
        terminate_timeout_in_seconds: None,
    });
    if args.hooks_port.is_none() && image.is_none() && microvm.is_none() {
        return None;
    }
    Some(Hooks {
        port: args.hooks_port.map(i32::from),
        microvm_hooks: microvm,
        microvm_image_hooks: image,
    })
}

fn pairs(items: &[String]) -> Result<EnvironmentVariables> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--env {item:?} is not KEY=VALUE"),
        })
        .collect()
}

/// Prints the version's state changes and the build's log until the build
/// ends; returns the version as it ended.
async fn follow(
    client: &Client,
    args: &CreateArgs,
    version: &str,
) -> Result<MicrovmImageVersionSummary> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    let images = args.api.data_dir().join("images");
    let mut last_state = None;
    let mut log = LogTail::default();
    loop {
        let summary = get_version(client, &args.name, version).await?;
        if log.path.is_none() {
            log.path = build_log(client, &images, &args.name, version).await;
        }
        log.print_new();
        if last_state != Some(summary.state) {
            eprintln!(
                "[{:7.1}s] version {version}: {}",
                started.elapsed().as_secs_f64(),
                summary.state
            );
            last_state = Some(summary.state);
        }
        if matches!(
            summary.state,
            MicrovmImageVersionState::Successful | MicrovmImageVersionState::Failed
        ) {
            log.print_new();
            return Ok(summary);
        }
        if Instant::now() >= deadline {
            bail!(
                "the build of {}:{version} is still {} after {} s",
                args.name,
                summary.state,
                args.timeout
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn get_version(
    client: &Client,
    name: &str,
    version: &str,
) -> Result<MicrovmImageVersionSummary> {
    let request = GetMicrovmImageVersionInput {
        image_identifier: name.to_owned(),
        image_version: version.to_owned(),
    };
    Ok(client.get_microvm_image_version(&request).await?)
}

/// The build's log file, when the server keeps it in this data directory
/// (`images/<image id>/<version>/<build id>.log`).
async fn build_log(client: &Client, images: &Path, name: &str, version: &str) -> Option<PathBuf> {
    let builds = client
        .list_all_microvm_image_builds(name, version)
        .await
        .ok()?;
    let build = builds.last()?;
    let file = format!("{}.log", build.build_id);
    std::fs::read_dir(images)
        .ok()?
        .flatten()
        .map(|entry| entry.path().join(version).join(&file))
        .find(|path| path.is_file())
}

/// The part of a log file not printed yet.
#[derive(Default)]
struct LogTail {
    path: Option<PathBuf>,
    offset: u64,
}

impl LogTail {
    /// Prints the complete lines added since the last call to stderr.
    fn print_new(&mut self) {
        let Some(path) = &self.path else {
            return;
        };
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        let mut text = String::new();
        if file.seek(std::io::SeekFrom::Start(self.offset)).is_err()
            || file.read_to_string(&mut text).is_err()
        {
            return;
        }
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        eprint!("{}", &text[..complete]);
        self.offset += complete as u64;
    }
}

/// The code artifact as zip bytes, checked for a root `Dockerfile`.
fn artifact_zip(source: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(source)
        .with_context(|| format!("no code artifact at {}", source.display()))?;
    if meta.is_dir() {
        if !source.join("Dockerfile").is_file() {
            bail!("{} has no Dockerfile at its root", source.display());
        }
        return zip_dir(source);
    }

    let bytes = std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
    let archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes))
        .with_context(|| format!("{} is neither a directory nor a zip", source.display()))?;
    if archive.index_for_name("Dockerfile").is_none() {
        bail!("{} has no Dockerfile at its root", source.display());
    }
    Ok(bytes)
}

/// Zips a directory's files, directories and symbolic links with their
/// modes, names relative to it.
fn zip_dir(root: &Path) -> Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = path
                .strip_prefix(root)
                .expect("entries are under the root")
                .to_str()
                .with_context(|| format!("{} is not UTF-8", path.display()))?
                .to_owned();
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(mode);
            if meta.is_symlink() {
                let target = std::fs::read_link(&path)?;
                let target = target.to_string_lossy();
                writer.add_symlink(name, target.as_ref(), options)?;
            } else if meta.is_dir() {
                writer.add_directory(format!("{name}/"), options)?;
                pending.push(path);
            } else if meta.is_file() {
                writer.start_file(name, options)?;
                let data = std::fs::read(&path)?;
                writer.write_all(&data)?;
            }
        }
    }
    Ok(writer.finish()?.into_inner())
}

/// A name as it may appear in an object key.
fn key_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_zipped_directory_keeps_its_files_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n").unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/run.sh"), "#!/bin/sh\n").unwrap();
        let script = dir.path().join("bin/run.sh");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();

        let bytes = artifact_zip(dir.path()).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut text = String::new();
        archive
            .by_name("Dockerfile")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "FROM busybox\n");
        assert_eq!(
            archive.by_name("bin/run.sh").unwrap().unix_mode().unwrap() & 0o777,
            0o755
        );
    }

    #[test]
    fn an_artifact_without_a_dockerfile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        let error = artifact_zip(dir.path()).unwrap_err().to_string();
        assert!(error.contains("has no Dockerfile at its root"), "{error}");
    }

    #[test]
    fn image_names_are_checked_as_the_model_does() {
        assert!(check_name("native-app_2").is_ok());
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(check_name("arn:aws:lambda:us-east-1:000000000000:microvm-image:app").is_ok());
        for bad in [
            "",
            "has space",
            "dots.not.allowed",
            "slash/no",
            &"a".repeat(65),
        ] {
            let err = check_name(bad).expect_err(bad);
            assert!(err.to_string().contains("--name"), "{err}");
        }
    }
}
