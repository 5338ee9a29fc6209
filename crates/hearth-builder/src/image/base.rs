//! Managed base images: the microVM's OS layer (kernel, modules, agent),
//! versioned.
//!
//! The guest assets directory (`$HEARTH_ASSETS`) holds the current base:
//! `vmlinuz`, `initramfs.cpio.gz` and a `manifest.json` naming the kernel
//! release and the agent's SHA-256. A base's id is both: `<kernel
//! release>-<first 12 hex digits of the agent digest>`. An image build pins
//! the current base by copying its files into `bases/<id>/` (once per id),
//! and its image.json points there; so an image keeps restoring with the
//! kernel and agent its snapshot was taken with, whatever the assets
//! directory holds later.
//!
//! Limitation: pinned bases are never removed, even once no image version
//! refers to them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::layout::BaseRecord;

/// The kernel's file name in an assets or base directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initramfs's file name.
pub const INITRAMFS_FILE: &str = "initramfs.cpio.gz";
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Why the base could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The assets directory lacks a file.
    #[error("guest assets missing: {path} not found (run scripts/setup.sh, or set HEARTH_ASSETS)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The manifest cannot be read.
    #[error("guest assets manifest {path} is unreadable")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The assets changed while they were copied, twice.
    #[error("guest assets in {dir} keep changing; try again once they are rebuilt")]
    Changing {
        /// The assets directory.
        dir: PathBuf,
    },
    /// A file-system failure.
    #[error("cannot copy the base image to {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

/// The parts of `manifest.json` a base is named by.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Manifest {
    kernel_release: String,
    agent_sha256: String,
}

impl Manifest {
    fn read(dir: &Path) -> Result<Manifest, BaseError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = fs::read(&path).map_err(|_| BaseError::Missing { path: path.clone() })?;
        serde_json::from_slice(&bytes).map_err(|source| BaseError::Manifest { path, source })
    }

    fn id(&self) -> String {
        let digest: String = self.agent_sha256.chars().take(12).collect();
        format!("{}-{digest}", self.kernel_release)
    }
}

/// Pins the base in `assets` under `bases/`, copying it the first time.
///
/// # Errors
///
/// [`BaseError`] when the assets are missing or cannot be copied.
pub fn pin(assets: &Path, bases: &Path) -> Result<BaseRecord, BaseError> {
    for file in [KERNEL_FILE, INITRAMFS_FILE] {
        let path = assets.join(file);
        if !path.is_file() {
            return Err(BaseError::Missing { path });
        }
    }
    // A rebuild of the assets during the copy is noticed and retried once.
    for _ in 0..2 {
        let manifest = Manifest::read(assets)?;
        let dir = bases.join(manifest.id());
        if Manifest::read(&dir).ok().as_ref() == Some(&manifest) {
            return Ok(record(&manifest, &dir));
        }

        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BaseError::Io { path, source }
        };
        fs::create_dir_all(bases).map_err(io(bases))?;
        let staging = tempfile::Builder::new()
            .prefix(".pin-")
            .tempdir_in(bases)
            .map_err(io(bases))?;
        for file in [KERNEL_FILE, INITRAMFS_FILE, MANIFEST_FILE] {
            let to = staging.path().join(file);
            fs::copy(assets.join(file), &to).map_err(io(&to))?;
        }
        if Manifest::read(assets)? != manifest {
            continue;
        }

        let kept = staging.keep();
        if fs::rename(&kept, &dir).is_err() {
            // Another build pinned the same base first.
            let _ = fs::remove_dir_all(&kept);
        }
        return Ok(record(&manifest, &dir));
    }
    Err(BaseError::Changing {
        dir: assets.to_path_buf(),
    })
}

fn record(manifest: &Manifest, dir: &Path) -> BaseRecord {
    BaseRecord {
        id: manifest.id(),
        kernel_release: manifest.kernel_release.clone(),
        agent_sha256: manifest.agent_sha256.clone(),
        kernel: dir.join(KERNEL_FILE),
        initramfs: dir.join(INITRAMFS_FILE),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn assets(dir: &Path, agent: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(KERNEL_FILE), format!("kernel {agent}")).unwrap();
        fs::write(dir.join(INITRAMFS_FILE), format!("initramfs {agent}")).unwrap();
        let manifest =
            format!(r#"{{"format": 1, "kernel_release": "6.1.0-x", "agent_sha256": "{agent}"}}"#);
        fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
    }

    #[test]
    fn a_pinned_base_survives_new_assets() {
        let dir = tempfile::tempdir().unwrap();
        let (assets_dir, bases) = (dir.path().join("assets"), dir.path().join("bases"));
        assets(&assets_dir, "aaaaaaaaaaaaaaaa");
        let first = pin(&assets_dir, &bases).unwrap();
        assert_eq!(first.id, "6.1.0-x-aaaaaaaaaaaa");
        assert_eq!(pin(&assets_dir, &bases).unwrap(), first, "pinned once");

        assets(&assets_dir, "bbbbbbbbbbbbbbbb");
        let second = pin(&assets_dir, &bases).unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(
            fs::read_to_string(&first.kernel).unwrap(),
            "kernel aaaaaaaaaaaaaaaa"
        );
        assert_eq!(
            fs::read_to_string(&second.initramfs).unwrap(),
            "initramfs bbbbbbbbbbbbbbbb"
        );
        assert_eq!(fs::read_dir(&bases).unwrap().count(), 2, "no staging left");
    }

    #[test]
    fn missing_assets_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = pin(dir.path(), &dir.path().join("bases")).unwrap_err();
        assert!(
            err.to_string().starts_with("guest assets missing:"),
            "{err}"
        );
    }
}
