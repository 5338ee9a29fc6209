//! Creating VMs: a directory, a disk, a config, and a shim to own them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hearth_protocol::AppSpec;

use crate::layout::{VmConfig, VmDir, VmState, VmStatus};

/// How long a new VM may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(150);

/// Errors creating a VM.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The root filesystem given does not exist.
    #[error("root filesystem {0} does not exist")]
    NoRootfs(PathBuf),
    /// The root filesystem given is a file but not a disk image.
    #[error("{0} is neither a directory nor an ext4 or qcow2 disk image")]
    NotAnImage(PathBuf),
    /// The data directory's path is too long for the VM's sockets.
    #[error(
        "the VM directory {0} is too long a path for a unix socket (set a shorter HEARTH_DATA)"
    )]
    PathTooLong(PathBuf),
    /// A file of the VM could not be made.
    #[error("{what} {path}")]
    Io {
        /// What was being made.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The disk could not be made.
    #[error("disk")]
    Disk(#[from] hearth_vmm::DiskError),
    /// The snapshot cannot be restored.
    #[error("bad snapshot {path}")]
    Snapshot {
        /// The snapshot.
        path: PathBuf,
        /// Why.
        #[source]
        source: hearth_vmm::SnapshotError,
    },
    /// The VM did not start.
    #[error("vm {id} did not start: {reason} (console: {console})")]
    Failed {
        /// The VM's id.
        id: String,
        /// Why, as its shim recorded it.
        reason: String,
        /// The VM's console log.
        console: PathBuf,
    },
}

/// Where a new VM's root filesystem comes from.
pub enum RootSource {
    /// A directory, turned into an ext4 image.
    Dir(PathBuf),
    /// An existing disk image (raw ext4 or qcow2), used read-only as the base.
    Image(PathBuf),
}

/// What to boot.
pub struct BootSpec {
    /// Root filesystem.
    pub root: RootSource,
    /// The app to start after boot.
    pub app: Option<AppSpec>,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Size of the root disk in bytes when made from a directory.
    pub disk_bytes: u64,
    /// A NIC in a network namespace of the VM's own, and where its traffic
    /// may go; `None` for no network.
    pub network: Option<hearth_net::Egress>,
}

/// The files every VM needs.
pub struct Host {
    /// The data directory.
    pub data: PathBuf,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The accelerator probe's cache.
    pub accel_cache: PathBuf,
    /// The program that runs shims (`hearth`).
    pub exe: PathBuf,
}

/// A new VM id: `vm-` and 12 hex digits.
pub fn new_id() -> String {
    format!("vm-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LaunchError {
    let path = path.to_owned();
    move |source| LaunchError::Io { what, path, source }
}

/// Boots a new VM and waits until its agent answers.
///
/// # Errors
///
/// Fails when the root filesystem is missing or the VM does not start; a VM
/// that did not start leaves nothing behind but its directory's logs.
pub async fn boot(host: &Host, spec: BootSpec) -> Result<VmDir, LaunchError> {
    let id = new_id();
    let dir = VmDir::new(&host.data, &id);
    check_socket_path(&dir)?;
    if let RootSource::Image(image) = &spec.root {
        check_image(image)?;
    }
    std::fs::create_dir_all(dir.root()).map_err(io_err("creating", dir.root()))?;

    let base = match spec.root {
        RootSource::Dir(src) => {
            if !src.is_dir() {
                let _ = std::fs::remove_dir_all(dir.root());
                return Err(LaunchError::NoRootfs(src));
            }
            let image = dir.root().join("rootfs.ext4");
            if let Err(err) = hearth_vmm::disk::make_ext4(&src, &image, spec.disk_bytes).await {
                let _ = std::fs::remove_dir_all(dir.root());
                return Err(err.into());
            }
            image
        }
        RootSource::Image(image) => {
            if !image.is_file() {
                let _ = std::fs::remove_dir_all(dir.root());
                return Err(LaunchError::NoRootfs(image));
            }
            std::fs::canonicalize(&image).map_err(io_err("resolving", &image))?
        }
    };
    if let Err(err) = hearth_vmm::disk::create_overlay(&base, &dir.disk()).await {
        let _ = std::fs::remove_dir_all(dir.root());
        return Err(err.into());
    }

    let config = VmConfig {
        id: id.clone(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        kernel: host.kernel.clone(),
        initramfs: host.initramfs.clone(),
        app: spec.app,
        restore_from: None,
        hostname: id.clone(),
        accel_cache: host.accel_cache.clone(),
        network: spec.network,
    };
    start(host, &dir, &config).await?;
    Ok(dir)
}

/// Restores a new VM from a snapshot directory and waits until its agent
/// answers.
///
/// # Errors
///
/// Fails when the snapshot is damaged or was taken by an incompatible QEMU,
/// or when the VM does not start.
pub async fn restore(host: &Host, snapshot: &Path) -> Result<VmDir, LaunchError> {
    restore_as(host, snapshot, &new_id()).await
}

/// Like [`restore`], with the VM's id chosen by the caller (a microVM's VM
/// carries the microVM's id). A VM that does not start leaves its directory,
/// with its logs, for the caller to inspect and remove.
///
/// # Errors
///
/// Fails when the snapshot is damaged or was taken by an incompatible QEMU,
/// when the id is taken, or when the VM does not start.
pub async fn restore_as(host: &Host, snapshot: &Path, id: &str) -> Result<VmDir, LaunchError> {
    restore_with(host, snapshot, id, None).await
}

/// Like [`restore_as`], with the egress of the VM's network when its
/// snapshot has a NIC (`None`: internet egress).
///
/// # Errors
///
/// As [`restore_as`].
pub async fn restore_with(
    host: &Host,
    snapshot: &Path,
    id: &str,
    egress: Option<hearth_net::Egress>,
) -> Result<VmDir, LaunchError> {
    let snap_err = |source| LaunchError::Snapshot {
        path: snapshot.to_owned(),
        source,
    };
    let opened = hearth_vmm::Snapshot::open_async(snapshot)
        .await
        .map_err(snap_err)?;
    let meta = opened.meta();

    let dir = VmDir::new(&host.data, id);
    check_socket_path(&dir)?;
    let vms = host.data.join("vms");
    std::fs::create_dir_all(&vms).map_err(io_err("creating", &vms))?;
    std::fs::create_dir(dir.root()).map_err(io_err("creating", dir.root()))?;

    // The VM writes to its own copy of the snapshot's disk.
    let source = snapshot.join("disk.qcow2");
    if let Err(err) = tokio::fs::copy(&source, dir.disk()).await {
        let _ = std::fs::remove_dir_all(dir.root());
        return Err(LaunchError::Io {
            what: "copying",
            path: source,
            source: err,
        });
    }

    let snapshot = std::fs::canonicalize(snapshot).map_err(io_err("resolving", snapshot))?;
    let config = VmConfig {
        id: id.to_owned(),
        vcpus: meta.machine.vcpus,
        memory_mib: meta.machine.memory_mib,
        kernel: host.kernel.clone(),
        initramfs: host.initramfs.clone(),
        app: None,
        restore_from: Some(snapshot),
        hostname: id.to_owned(),
        accel_cache: host.accel_cache.clone(),
        network: egress,
    };
    start(host, &dir, &config).await?;
    Ok(dir)
}

async fn start(host: &Host, dir: &VmDir, config: &VmConfig) -> Result<(), LaunchError> {
    dir.write_config(config)
        .map_err(io_err("writing", &dir.config()))?;
    let log_path = dir.shim_log();
    let log = std::fs::File::create(&log_path).map_err(io_err("creating", &log_path))?;
    let log_err = log.try_clone().map_err(io_err("opening", &log_path))?;

    // Its own process group: the shim outlives the command that started it
    // and ignores that command's Ctrl-C.
    let mut command = std::process::Command::new(&host.exe);
    command
        .arg("shim")
        .arg(dir.root())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .map_err(io_err("starting the shim", &host.exe))?;

    // Reap the shim if it exits while this process still runs, and let the
    // wait below know at once.
    let (exited_tx, exited_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = child;
        let status = child.wait();
        let _ = exited_tx.send(status.map(|s| s.to_string()).unwrap_or_default());
    });

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match wait_ready(dir, Duration::from_millis(200)).await {
            Ok(()) => return Ok(()),
            Err(err @ LaunchError::Failed { .. }) if Instant::now() >= deadline => return Err(err),
            Err(LaunchError::Failed { reason, .. }) if reason != NOT_READY => {
                return Err(failed(dir, reason));
            }
            Err(_) => {}
        }
        if let Ok(status) = exited_rx.try_recv() {
            // The shim may have recorded why before it went.
            if let Err(LaunchError::Failed { reason, .. }) = wait_ready(dir, Duration::ZERO).await {
                if reason != NOT_READY {
                    return Err(failed(dir, reason));
                }
            }
            let log = std::fs::read_to_string(dir.shim_log()).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            return Err(failed(dir, format!("its shim exited ({status}): {last}")));
        }
    }
}

const NOT_READY: &str = "not ready in time";

/// Waits until the VM in `dir` runs, or says why it will not.
///
/// # Errors
///
/// Fails with the shim's recorded reason when the VM exited, or when it is
/// not ready in time.
pub async fn wait_ready(dir: &VmDir, timeout: Duration) -> Result<(), LaunchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let state: Option<VmState> = dir.read_state().ok();
        match state {
            Some(state) if state.status == VmStatus::Running => return Ok(()),
            Some(state) if state.status == VmStatus::Exited => {
                let reason = state.exit.unwrap_or_else(|| "exited".to_owned());
                return Err(failed(dir, reason));
            }
            _ if Instant::now() >= deadline => {
                return Err(failed(dir, NOT_READY.to_owned()));
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Unix socket paths are limited to 107 bytes.
fn check_socket_path(dir: &VmDir) -> Result<(), LaunchError> {
    let len = dir.shim_socket().as_os_str().len();
    if len > 107 {
        return Err(LaunchError::PathTooLong(dir.root().to_owned()));
    }
    Ok(())
}

/// A root disk image must be ext4 (raw) or qcow2.
fn check_image(image: &Path) -> Result<(), LaunchError> {
    use std::io::{Read, Seek, SeekFrom};

    let not_image = || LaunchError::NotAnImage(image.to_owned());
    let mut file =
        std::fs::File::open(image).map_err(|_| LaunchError::NoRootfs(image.to_owned()))?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(not_image());
    }
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_ok() && magic == *b"QFI\xfb" {
        return Ok(());
    }

    // The ext2/3/4 superblock starts at 1024; its magic 0xEF53 is at 56.
    let mut ext_magic = [0u8; 2];
    file.seek(SeekFrom::Start(1024 + 56))
        .map_err(|_| not_image())?;
    file.read_exact(&mut ext_magic).map_err(|_| not_image())?;
    if ext_magic == [0x53, 0xef] {
        Ok(())
    } else {
        Err(not_image())
    }
}

fn failed(dir: &VmDir, reason: String) -> LaunchError {
    LaunchError::Failed {
        id: dir.id(),
        reason,
        console: dir.console(),
    }
}
