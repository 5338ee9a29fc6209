//! Snapshots: a paused VM's memory and disk, checksummed, as one directory.
//!
//! Layout of a snapshot directory:
//!
//! - `meta.json`: [`SnapshotMeta`]: format version, the QEMU version and
//!   [`MachineSpec`] the state was saved with, creation time, and the size
//!   and BLAKE3 of every other file;
//! - `memory`: the QEMU migration stream;
//! - `disk.qcow2`: the VM's root disk flattened at snapshot time (no
//!   backing file), when the VM had one.
//!
//! A snapshot is written into `<dest>.tmp-<random>/` and renamed into place
//! only when complete, so a directory at `dest` is always whole. Opening
//! checks every size and checksum before anything is loaded, and refuses a
//! state that this QEMU cannot load.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest;
use crate::disk::{self, DiskError};
use crate::qemu::{MachineConfig, MachineSpec, Network, QemuVersion, QemuVm, StateInfo, VmError};

/// The version of the layout this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The metadata file.
pub const META_FILE: &str = "meta.json";

/// The memory (migration stream) file.
pub const MEMORY_FILE: &str = "memory";

/// The flattened root disk.
pub const DISK_FILE: &str = "disk.qcow2";

/// Errors of snapshot creation, validation and restore.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot directory does not exist.
    #[error("snapshot not found at {0}")]
    NotFound(PathBuf),

    /// The destination of a new snapshot is taken.
    #[error("snapshot destination already exists: {0}")]
    AlreadyExists(PathBuf),

    /// `meta.json` is missing.
    #[error("snapshot {dir} has no {META_FILE}")]
    MissingMeta {
        /// The snapshot directory.
        dir: PathBuf,
    },

    /// `meta.json` cannot be parsed.
    #[error("snapshot {dir} has a garbled {META_FILE}")]
    BadMeta {
        /// The snapshot directory.
        dir: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// The snapshot uses a layout this code does not know.
    #[error(
        "snapshot format version {found} is not supported (this build reads {FORMAT_VERSION})"
    )]
    UnsupportedFormat {
        /// The version in `meta.json`.
        found: u32,
    },

    /// A file named by the metadata is missing.
    #[error("snapshot file {file} is missing")]
    MissingFile {
        /// The file.
        file: PathBuf,
    },

    /// A file is shorter or longer than recorded.
    #[error("snapshot file {file} is truncated or padded: {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The file.
        file: PathBuf,
        /// The recorded size.
        expected: u64,
        /// The size found.
        actual: u64,
    },

    /// A file's checksum differs from the recorded one.
    #[error("snapshot file {file} is corrupt: blake3 {actual}, expected {expected}")]
    ChecksumMismatch {
        /// The file.
        file: PathBuf,
        /// The recorded BLAKE3 hex.
        expected: String,
        /// The BLAKE3 hex found.
        actual: String,
    },

    /// This QEMU cannot load a state saved by the snapshot's QEMU.
    #[error("snapshot was saved by qemu {saved}; qemu {running} cannot load it")]
    IncompatibleQemu {
        /// The version that saved the state.
        saved: QemuVersion,
        /// The version that would load it.
        running: QemuVersion,
    },

    /// The machine that would load the state differs from the saved one.
    #[error("snapshot machine does not match the vm: {detail}")]
    MachineMismatch {
        /// The first difference.
        detail: String,
    },

    /// The installed QEMU's version could not be determined.
    #[error("cannot determine the version of {binary}: {detail}")]
    QemuVersion {
        /// The QEMU binary.
        binary: String,
        /// What went wrong.
        detail: String,
    },

    /// A file operation failed.
    #[error("snapshot i/o failed on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Saving or loading the VM state failed.
    #[error("vm state transfer failed")]
    Vm(#[from] VmError),

    /// Flattening the disk failed.
    #[error("flattening the root disk failed")]
    Disk(#[from] DiskError),
}

/// The size and checksum of one snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3, lowercase hex.
    pub blake3: String,
}

/// The contents of `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The QEMU that saved the state.
    pub qemu_version: QemuVersion,
    /// The machine the state belongs to (vCPUs, memory, devices, ...).
    pub machine: MachineSpec,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The memory file.
    pub memory: FileDigest,
    /// The flattened root disk, when the VM had one.
    pub disk: Option<FileDigest>,
}

/// A validated snapshot directory.
#[derive(Debug, Clone)]
pub struct Snapshot {
    dir: PathBuf,
    meta: SnapshotMeta,
}

impl Snapshot {
    /// Snapshots `vm` into the new directory `dest`: pauses it, saves its
    /// memory, flattens `root_disk` (the VM's overlay) if given, and writes
    /// the metadata. The VM stays paused. Runs no disk I/O on `dest` until
    /// the whole snapshot is written beside it.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::AlreadyExists`] when `dest` exists; the errors of
    /// the save, the flatten and the writes. Nothing is left behind on error.
    pub async fn create(
        vm: &QemuVm,
        root_disk: Option<&Path>,
        dest: &Path,
    ) -> Result<Snapshot, SnapshotError> {
        if dest.exists() {
            return Err(SnapshotError::AlreadyExists(dest.to_owned()));
        }
        let tmp = tmp_dir(dest);
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;

        let result = write_contents(vm, root_disk, &tmp).await;
        let result = result.and_then(|meta| {
            publish(&tmp, dest)?;
            Ok(meta)
        });
        match result {
            Ok(meta) => Ok(Snapshot {
                dir: dest.to_owned(),
                meta,
            }),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(error)
            }
        }
    }

    /// Opens and fully validates a snapshot for the installed QEMU
    /// (`qemu-system-x86_64` on `PATH`). Hashes every file: blocking, so
    /// call it from `spawn_blocking` in async code.
    ///
    /// # Errors
    ///
    /// Any of the validation errors of [`Snapshot::open_for`], and
    /// [`SnapshotError::QemuVersion`].
    pub fn open(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let running = installed_qemu_version()?;
        Snapshot::open_for(dir, &running)
    }

    /// [`Snapshot::open`] on a blocking thread, for async callers: hashing
    /// a large memory file must not stall the runtime.
    ///
    /// # Errors
    ///
    /// As [`Snapshot::open`].
    pub async fn open_async(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let owned = dir.to_owned();
        let task = tokio::task::spawn_blocking(move || Snapshot::open(&owned));
        match task.await {
            Ok(result) => result,
            Err(join) => Err(io(dir, std::io::Error::other(join))),
        }
    }

    /// Opens and fully validates a snapshot for a QEMU of version `running`.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::NotFound`], [`SnapshotError::MissingMeta`],
    /// [`SnapshotError::BadMeta`], [`SnapshotError::UnsupportedFormat`],
    /// [`SnapshotError::IncompatibleQemu`], [`SnapshotError::MachineMismatch`]
    /// (a machine type this driver does not make), and for each file
    /// [`SnapshotError::MissingFile`], [`SnapshotError::SizeMismatch`] or
    /// [`SnapshotError::ChecksumMismatch`].
    pub fn open_for(dir: &Path, running: &QemuVersion) -> Result<Snapshot, SnapshotError> {
        let meta = read_meta(dir)?;
        if !running.can_load(&meta.qemu_version) {
            return Err(SnapshotError::IncompatibleQemu {
                saved: meta.qemu_version,
                running: running.clone(),
            });
        }
        if meta.machine.machine != "microvm" {
            let detail = format!("machine type {:?} is not microvm", meta.machine.machine);
            return Err(SnapshotError::MachineMismatch { detail });
        }

        check_file(&dir.join(MEMORY_FILE), &meta.memory)?;
        if let Some(disk) = &meta.disk {
            check_file(&dir.join(DISK_FILE), disk)?;
        }
        Ok(Snapshot {
            dir: dir.to_owned(),
            meta,
        })
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The memory file.
    pub fn memory_path(&self) -> PathBuf {
        self.dir.join(MEMORY_FILE)
    }

    /// The flattened root disk, if the snapshot has one. Restored VMs must
    /// not write to it: give each an overlay on it.
    pub fn disk_path(&self) -> Option<PathBuf> {
        self.meta.disk.as_ref().map(|_| self.dir.join(DISK_FILE))
    }

    /// `config` adjusted to receive this snapshot: the saved vCPUs,
    /// memory and accelerator, and `incoming` set. Disks stay the caller's.
    pub fn restore_config(&self, mut config: MachineConfig) -> MachineConfig {
        config.vcpus = self.meta.machine.vcpus;
        config.memory_mib = self.meta.machine.memory_mib;
        config.accel = self.meta.machine.accel;
        let devices = &self.meta.machine.devices;
        config.network = if devices.iter().any(|d| d == "virtio-net-device,tap") {
            Network::Tap
        } else if devices.iter().any(|d| d.starts_with("virtio-net")) {
            Network::User
        } else {
            Network::None
        };
        config.incoming = true;
        config
    }

    /// Checks that a QEMU of `version` running a machine of `spec` can load
    /// this snapshot.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::IncompatibleQemu`] or [`SnapshotError::MachineMismatch`].
    pub fn check_machine(
        &self,
        version: &QemuVersion,
        spec: &MachineSpec,
    ) -> Result<(), SnapshotError> {
        if !version.can_load(&self.meta.qemu_version) {
            return Err(SnapshotError::IncompatibleQemu {
                saved: self.meta.qemu_version.clone(),
                running: version.clone(),
            });
        }
        match self.meta.machine.difference(spec) {
            Some(detail) => Err(SnapshotError::MachineMismatch { detail }),
            None => Ok(()),
        }
    }

    /// Loads this snapshot's memory into `vm`, which was spawned with
    /// `incoming` (see [`Snapshot::restore_config`]). The VM is paused
    /// afterwards; resume it to run.
    ///
    /// # Errors
    ///
    /// The errors of [`Snapshot::check_machine`] and of
    /// [`QemuVm::load_state`] (which checks the memory file's checksum again).
    pub async fn restore(&self, vm: &QemuVm) -> Result<StateInfo, SnapshotError> {
        self.check_machine(vm.qemu_version(), &vm.spec())?;
        let info = vm
            .load_state(&self.memory_path(), &self.meta.memory.blake3)
            .await?;
        Ok(info)
    }
}

async fn write_contents(
    vm: &QemuVm,
    root_disk: Option<&Path>,
    tmp: &Path,
) -> Result<SnapshotMeta, SnapshotError> {
    let state = vm.save_state(&tmp.join(MEMORY_FILE)).await?;
    let memory = FileDigest {
        size: state.bytes,
        blake3: state.blake3,
    };

    // After the save QEMU has flushed and released the disk: a consistent read.
    let disk = match root_disk {
        Some(overlay) => {
            let out = tmp.join(DISK_FILE);
            disk::flatten(overlay, &out).await?;
            Some(hash_blocking(out).await?)
        }
        None => None,
    };

    let meta = SnapshotMeta {
        format_version: FORMAT_VERSION,
        qemu_version: vm.qemu_version().clone(),
        machine: vm.spec(),
        created_unix_ms: now_ms(),
        memory,
        disk,
    };
    let path = tmp.join(META_FILE);
    let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other);
    let written = json.and_then(|json| {
        std::fs::write(&path, json)?;
        std::fs::File::open(&path)?.sync_all()
    });
    written.map_err(|e| io(&path, e))?;
    digest::sync_dir(tmp).map_err(|e| io(tmp, e))?;
    Ok(meta)
}

/// Renames the finished temporary directory to `dest`, durably.
fn publish(tmp: &Path, dest: &Path) -> Result<(), SnapshotError> {
    if dest.exists() {
        return Err(SnapshotError::AlreadyExists(dest.to_owned()));
    }
    std::fs::rename(tmp, dest).map_err(|e| io(dest, e))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        digest::sync_dir(parent).map_err(|e| io(parent, e))?;
    }
    Ok(())
}

fn tmp_dir(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(std::ffi::OsString::from)
        .unwrap_or_default();
    name.push(format!(".tmp-{:016x}", rand::random::<u64>()));
    dest.with_file_name(name)
}

async fn hash_blocking(path: PathBuf) -> Result<FileDigest, SnapshotError> {
    let task = tokio::task::spawn_blocking({
        let path = path.clone();
        move || digest::hash_file(&path)
    });
    let hashed = task
        .await
        .map_err(|e| io(&path, std::io::Error::other(e)))?;
    let (size, blake3) = hashed.map_err(|e| io(&path, e))?;
    Ok(FileDigest { size, blake3 })
}

fn read_meta(dir: &Path) -> Result<SnapshotMeta, SnapshotError> {
    if !dir.is_dir() {
        return Err(SnapshotError::NotFound(dir.to_owned()));
    }
    let path = dir.join(META_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SnapshotError::MissingMeta {
                dir: dir.to_owned(),
            });
        }
        Err(e) => return Err(io(&path, e)),
    };

    // The format version is read alone first so that a future layout gets
    // a clear error rather than a parse failure.
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let bad = |source| SnapshotError::BadMeta {
        dir: dir.to_owned(),
        source,
    };
    let version: Version = serde_json::from_slice(&text).map_err(bad)?;
    if version.format_version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedFormat {
            found: version.format_version,
        });
    }
    serde_json::from_slice(&text).map_err(bad)
}

/// Checks a file's size (cheap, first) and then its checksum.
fn check_file(path: &Path, expected: &FileDigest) -> Result<(), SnapshotError> {
    let actual = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SnapshotError::MissingFile {
                file: path.to_owned(),
            });
        }
        Err(e) => return Err(io(path, e)),
    };
    if actual != expected.size {
        return Err(SnapshotError::SizeMismatch {
            file: path.to_owned(),
            expected: expected.size,
            actual,
        });
    }

    let (_, hash) = digest::hash_file(path).map_err(|e| io(path, e))?;
    if !hash.eq_ignore_ascii_case(&expected.blake3) {
        return Err(SnapshotError::ChecksumMismatch {
            file: path.to_owned(),
            expected: expected.blake3.clone(),
            actual: hash,
        });
    }
    Ok(())
}

/// The version of `qemu-system-x86_64` on `PATH`, asked once per process.
pub fn installed_qemu_version() -> Result<QemuVersion, SnapshotError> {
    static VERSION: OnceLock<Result<QemuVersion, String>> = OnceLock::new();
    let binary = crate::qemu::DEFAULT_QEMU;
    let found = VERSION.get_or_init(|| {
        let output = std::process::Command::new(binary)
            .arg("--version")
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout);
        QemuVersion::parse_version_output(&text)
            .ok_or_else(|| format!("unexpected output {text:?}"))
    });
    found.clone().map_err(|detail| SnapshotError::QemuVersion {
        binary: binary.to_owned(),
        detail,
    })
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn io(path: &Path, source: std::io::Error) -> SnapshotError {
    SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::accel::Accel;

    fn version() -> QemuVersion {
        QemuVersion {
            major: 7,
            minor: 2,
            micro: 22,
            package: String::new(),
        }
    }

    /// A snapshot directory with a fake memory file, written by hand.
    fn fake_snapshot(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(MEMORY_FILE), b"QEVM state").unwrap();
        let (size, blake3) = digest::hash_file(&dir.join(MEMORY_FILE)).unwrap();
        let config = MachineConfig::new(Path::new("/k"), Path::new("/i"), dir, Accel::Tcg);
        let meta = SnapshotMeta {
            format_version: FORMAT_VERSION,
            qemu_version: version(),
            machine: config.spec(),
            created_unix_ms: 1,
            memory: FileDigest { size, blake3 },
            disk: None,
        };
        std::fs::write(dir.join(META_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
    }

    #[test]
    fn valid_snapshot_opens() {
        let dir = tempfile::tempdir().unwrap();
        fake_snapshot(dir.path());
        let snapshot = Snapshot::open_for(dir.path(), &version()).unwrap();
        assert_eq!(snapshot.meta().memory.size, 10);
        assert_eq!(snapshot.disk_path(), None);
    }

    #[test]
    fn missing_dir_and_meta_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Snapshot::open_for(&dir.path().join("nope"), &version()).unwrap_err();
        assert!(matches!(err, SnapshotError::NotFound(_)), "{err}");

        let err = Snapshot::open_for(dir.path(), &version()).unwrap_err();
        assert!(err.to_string().ends_with("has no meta.json"), "{err}");

        std::fs::write(dir.path().join(META_FILE), "{\"format_version\": 1, ").unwrap();
        let err = Snapshot::open_for(dir.path(), &version()).unwrap_err();
        assert!(
            err.to_string().ends_with("has a garbled meta.json"),
            "{err}"
        );

        std::fs::write(dir.path().join(META_FILE), "{\"format_version\": 9}").unwrap();
        let err = Snapshot::open_for(dir.path(), &version()).unwrap_err();
        assert!(
            matches!(err, SnapshotError::UnsupportedFormat { found: 9 }),
            "{err}"
        );
    }

    #[test]
    fn other_qemu_series_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fake_snapshot(dir.path());
        let newer = QemuVersion {
            major: 8,
            minor: 0,
            micro: 0,
            package: String::new(),
        };
        let err = Snapshot::open_for(dir.path(), &newer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapshot was saved by qemu 7.2.22; qemu 8.0.0 cannot load it"
        );
    }

    #[test]
    fn create_refuses_an_existing_destination() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tmp_dir(&dir.path().join("snap"));
        assert!(tmp
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.tmp-"));
        assert!(publish(&tmp, dir.path()).is_err());
    }
}
