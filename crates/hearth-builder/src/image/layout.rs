//! Where image builds keep their files, and what a built version holds.
//!
//! Under the data directory:
//!
//! ```text
//! images/<name>/<version>/            one built image version (version: 1, 2, …)
//!     snapshot/                       the hearth-vmm snapshot: meta.json, memory, disk.qcow2
//!     image.json                      an ImageRecord: config, app, hooks, resources,
//!                                     sizes, base image, build id, steps
//!     build.log                       the whole build log
//! images/<name>/.staging-<build id>/  a build in progress; renamed to <version> at the end
//! bases/<base id>/                    a managed base image version: vmlinuz,
//!                                     initramfs.cpio.gz, manifest.json
//! base-images/                        the base-image store (FROM images)
//! build-cache/                        the step cache
//! builds/<build id>/                  a build's scratch: context, rootfs, disks, build VMs
//! ```
//!
//! A version directory appears by one rename, complete, and never changes
//! afterwards; its number is the highest existing one plus one. A failed
//! build leaves no version directory, no staging and no scratch (only the
//! step cache keeps what completed). To restore a microVM from a version,
//! use its `snapshot/` with the kernel and initramfs its `image.json` names
//! (`base.kernel`, `base.initramfs`): those are the ones it was booted with,
//! and they stay in `bases/` when the machine's assets move on.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hearth_protocol::AppSpec;
use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::events::CacheStatus;
use crate::image::hooks::Hooks;

/// The `format` of the image.json this code writes.
pub const RECORD_FORMAT: u32 = 1;

/// Why the layout could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// No such image or version.
    #[error("image {reference} not found")]
    NotFound {
        /// `name` or `name:version`.
        reference: String,
    },
    /// A malformed `name[:version]`.
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference {
        /// As given.
        reference: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An image.json that cannot be read.
    #[error("image record {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A file-system failure.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `image.json`: everything known about one built image version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// [`RECORD_FORMAT`].
    pub format: u32,
    /// The image's name.
    pub name: String,
    /// The version's number.
    pub version: u32,
    /// The build that made it.
    pub build_id: String,
    /// When it was built, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The managed base image (kernel and agent) it was built and booted on.
    pub base: BaseRecord,
    /// The image config the Dockerfile produced.
    pub config: ImageConfig,
    /// The app as the agent starts it (entrypoint + cmd, env, user, workdir).
    pub app: AppSpec,
    /// The lifecycle hooks.
    pub hooks: Hooks,
    /// The microVM size the snapshot was taken with.
    pub resources: Resources,
    /// Sizes of what was built.
    pub sizes: Sizes,
    /// How long the build took, in milliseconds.
    pub durations_ms: Durations,
    /// The Dockerfile's steps.
    pub steps: Vec<StepRecord>,
}

/// The managed base image a version was built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// Its id: kernel release and the first digits of the agent's digest.
    pub id: String,
    /// The guest kernel's release.
    pub kernel_release: String,
    /// The SHA-256 of the agent binary.
    pub agent_sha256: String,
    /// The kernel to restore with.
    pub kernel: PathBuf,
    /// The initramfs to restore with.
    pub initramfs: PathBuf,
}

/// The microVM size of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `minimumMemoryInMiB` as asked.
    pub minimum_memory_mib: u32,
    /// The guest's memory: four times the minimum.
    pub memory_mib: u32,
    /// The guest's vCPUs: one per 2 GiB of guest memory, at least one.
    pub vcpus: u32,
}

impl Resources {
    /// The size class for a `minimumMemoryInMiB`.
    pub fn for_minimum(minimum_memory_mib: u32) -> Resources {
        let memory_mib = minimum_memory_mib.saturating_mul(4);
        Resources {
            minimum_memory_mib,
            memory_mib,
            vcpus: (memory_mib / 2048).max(1),
        }
    }
}

/// The sizes `snapshotBuild` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// The memory and device state.
    pub memory_snapshot_bytes: u64,
    /// The flattened disk image.
    pub disk_bytes: u64,
    /// The code artifact, unpacked.
    pub code_bytes: u64,
}

/// Phase durations in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// The whole build.
    pub total: u64,
    /// The Dockerfile's steps.
    pub dockerfile: u64,
    /// Boot, ready wait and snapshot.
    pub snapshot: u64,
    /// The validation, when it ran.
    pub validate: u64,
}

/// One Dockerfile step of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its Dockerfile line.
    pub line: usize,
    /// The instruction after substitution.
    pub instruction: String,
    /// Whether it came from the cache.
    pub cache: CacheStatus,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// The data directory's image paths.
#[derive(Debug, Clone)]
pub struct ImageLayout {
    data: PathBuf,
}

impl ImageLayout {
    /// The layout under the data directory `data`.
    pub fn new(data: impl Into<PathBuf>) -> ImageLayout {
        ImageLayout { data: data.into() }
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// `images/`.
    pub fn images(&self) -> PathBuf {
        self.data.join("images")
    }

    /// `images/<name>/`.
    pub fn image(&self, name: &str) -> PathBuf {
        self.images().join(name)
    }

    /// `images/<name>/<version>/`.
    pub fn version_dir(&self, name: &str, version: u32) -> PathBuf {
        self.image(name).join(version.to_string())
    }

    /// `bases/`.
    pub fn bases(&self) -> PathBuf {
        self.data.join("bases")
    }

    /// `base-images/`: the store FROM lines resolve in.
    pub fn base_images(&self) -> PathBuf {
        self.data.join("base-images")
    }

    /// `build-cache/`.
    pub fn build_cache(&self) -> PathBuf {
        self.data.join("build-cache")
    }

    /// `builds/`: the builds' scratch directories.
    pub fn builds(&self) -> PathBuf {
        self.data.join("builds")
    }

    /// The accelerator probe's cache, shared with every other VM.
    pub fn accel_cache(&self) -> PathBuf {
        self.data.join("accel.json")
    }

    /// The versions of an image, in ascending order.
    ///
    /// # Errors
    ///
    /// [`LayoutError::Io`] when the image directory cannot be read.
    pub fn versions(&self, name: &str) -> Result<Vec<u32>, LayoutError> {
        let dir = self.image(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir)(e)),
        };
        let mut versions: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|v: &u32| self.version_dir(name, *v).join("image.json").is_file())
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Reads one version's record; the newest version when `version` is
    /// `None`.
    ///
    /// # Errors
    ///
    /// [`LayoutError::NotFound`], or a corrupt record.
    pub fn get(&self, name: &str, version: Option<u32>) -> Result<ImageRecord, LayoutError> {
        let reference = match version {
            Some(v) => format!("{name}:{v}"),
            None => name.to_owned(),
        };
        let version = match version {
            Some(v) => v,
            None => *self.versions(name)?.last().ok_or(LayoutError::NotFound {
                reference: reference.clone(),
            })?,
        };
        let path = self.version_dir(name, version).join("image.json");
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::NotFound { reference })
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| LayoutError::Corrupt { path, source })
    }

    /// Every readable version of every image, by name then version.
    ///
    /// # Errors
    ///
    /// [`LayoutError::Io`] when a directory cannot be read.
    pub fn list(&self) -> Result<Vec<ImageRecord>, LayoutError> {
        let dir = self.images();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir)(e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();

        let mut records = Vec::new();
        for name in names {
            for version in self.versions(&name)? {
                match self.get(&name, Some(version)) {
                    Ok(record) => records.push(record),
                    // One damaged record must not hide the others.
                    Err(error) => tracing::warn!(%error, "skipping an unreadable image record"),
                }
            }
        }
        Ok(records)
    }

    /// Removes one version, or every version of an image; returns the
    /// versions removed. Each goes out of sight by a rename first.
    ///
    /// # Errors
    ///
    /// [`LayoutError::NotFound`] when there is nothing to remove.
    pub fn remove(&self, name: &str, version: Option<u32>) -> Result<Vec<u32>, LayoutError> {
        let versions = match version {
            Some(v) => vec![v],
            None => self.versions(name)?,
        };
        let reference = match version {
            Some(v) => format!("{name}:{v}"),
            None => name.to_owned(),
        };
        let mut removed = Vec::new();
        for version in versions {
            let dir = self.version_dir(name, version);
            let trash = self.image(name).join(format!(".removing-{version}"));
            match fs::rename(&dir, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&dir)(e)),
            }
            fs::remove_dir_all(&trash).map_err(io_error(&trash))?;
            removed.push(version);
        }
        if removed.is_empty() {
            return Err(LayoutError::NotFound { reference });
        }
        // The image's directory goes with its last version.
        let _ = fs::remove_dir(self.image(name));
        Ok(removed)
    }
}

/// Parses `name[:version]`.
///
/// # Errors
///
/// [`LayoutError::BadReference`] for a bad name or version.
pub fn parse_reference(reference: &str) -> Result<(String, Option<u32>), LayoutError> {
    let bad = |reason| LayoutError::BadReference {
        reference: reference.to_owned(),
        reason,
    };
    let (name, version) = match reference.split_once(':') {
        Some((name, version)) => {
            let version = version
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad("the version is not a positive number"))?;
            (name, Some(version))
        }
        None => (reference, None),
    };
    if !valid_name(name) {
        return Err(bad("a name is 1 to 64 letters, digits, '-' and '_'"));
    }
    Ok((name.to_owned(), version))
}

/// Whether `name` is a valid image name: 1 to 64 of `[a-zA-Z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        assert_eq!(parse_reference("app").unwrap(), ("app".into(), None));
        assert_eq!(
            parse_reference("my_app-2:7").unwrap(),
            ("my_app-2".into(), Some(7))
        );
        assert!(parse_reference("app:0").is_err());
        assert!(parse_reference("app:x").is_err());
        assert!(parse_reference("../x").is_err());
        assert!(parse_reference("").is_err());
    }

    #[test]
    fn resources_follow_the_size_classes() {
        assert_eq!(
            Resources::for_minimum(2048),
            Resources {
                minimum_memory_mib: 2048,
                memory_mib: 8192,
                vcpus: 4
            }
        );
        assert_eq!(Resources::for_minimum(256).vcpus, 1);
    }

    #[test]
    fn versions_skip_staging_and_removal_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ImageLayout::new(dir.path());
        for version in ["1", "2", "10", ".staging-b-1"] {
            let path = layout.image("app").join(version);
            fs::create_dir_all(&path).unwrap();
            fs::write(path.join("image.json"), "{}").unwrap();
        }
        assert_eq!(layout.versions("app").unwrap(), vec![1, 2, 10]);
        assert!(matches!(
            layout.get("app", None),
            Err(LayoutError::Corrupt { .. })
        ));
        assert_eq!(layout.remove("app", Some(2)).unwrap(), vec![2]);
        assert!(matches!(
            layout.remove("app", Some(2)),
            Err(LayoutError::NotFound { .. })
        ));
        assert_eq!(layout.versions("app").unwrap(), vec![1, 10]);
    }
}
