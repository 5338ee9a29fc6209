//! The local base-image store: image reference → root file system + config.
//!
//! Layout under the store's directory:
//!
//! ```text
//! images/<escaped reference>/rootfs/       the image's root file system
//! images/<escaped reference>/config.json   its ImageConfig
//! images/<escaped reference>/image.json    reference, id, source
//! tmp/                                     staging; entries are built here
//!                                          and renamed into images/
//! ```
//!
//! An entry appears whole or not at all, and is never changed in place: a
//! newer pull of the same reference is staged beside it and swapped in.
//! References are resolved as Docker does: one with a registry host
//! (`127.0.0.1:5000/x:y`, `host.tld/x`) goes to that registry, and the pull
//! is kept here under its digest; a bare name (`debian:12`, `busybox`) is
//! looked up here only, since this machine reaches no default registry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::oci::{PullError, Puller};
use crate::reference::{ImageRef, ReferenceError};

/// Why the store could not provide an image.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The reference is malformed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A bare name that the store does not hold.
    #[error(
        "base image {reference} not found: it is not in the local image store and names no \
         registry (`hearth image seed` adds debian:12 and busybox)"
    )]
    NotFound {
        /// The reference, normalized.
        reference: String,
    },
    /// Pulling from the registry failed.
    #[error(transparent)]
    Pull(#[from] PullError),
    /// An entry's metadata is unreadable.
    #[error("image store entry {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A file-system failure.
    #[error("image store: cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// The normalized reference (`debian:12`, `busybox:latest`).
    pub reference: String,
    /// A stable identity: the registry digest, or a hash made when seeded.
    pub id: String,
    /// Where the image came from (`registry`, `debootstrap`, `busybox`).
    pub source: String,
    /// The root file system; treat it as read-only.
    pub rootfs: PathBuf,
    /// The image's configuration.
    pub config: ImageConfig,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    reference: String,
    id: String,
    source: String,
}

/// A new entry being assembled in the store's staging area.
#[derive(Debug)]
pub struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    /// The directory to fill with the image's root file system.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A scratch directory beside the rootfs, removed with the staging.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Gives up the entry but leaves its files on disk (for inspection when
    /// deleting them would be unsafe); returns its directory.
    pub fn abandon(self) -> PathBuf {
        self.dir.keep()
    }
}

/// The base-image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) a store under `root`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, StoreError> {
        let root = root.into();
        for dir in [root.join("images"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir, source })?;
        }
        Ok(ImageStore { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Looks an image up by reference, without any network access.
    ///
    /// # Errors
    ///
    /// [`StoreError`] for a malformed reference or a corrupt entry.
    pub fn get(&self, reference: &str) -> Result<Option<StoredImage>, StoreError> {
        let image = ImageRef::parse(reference)?;
        self.read_entry(&self.entry_dir(&image.to_string()))
    }

    /// Lists the references the store holds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the store cannot be read.
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        let images = self.root.join("images");
        let entries = fs::read_dir(&images).map_err(|source| StoreError::Io {
            path: images,
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Ok(Some(image)) = self.read_entry(&entry.path()) {
                out.push(image.reference);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Resolves a base-image reference: a registry reference is pulled (or
    /// reused when the registry's digest matches what is stored); a bare
    /// name must already be in the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown bare name, [`StoreError::Pull`]
    /// for a registry failure.
    pub async fn resolve(
        &self,
        reference: &str,
        puller: &Puller,
    ) -> Result<StoredImage, StoreError> {
        let image = ImageRef::parse(reference)?;
        let normalized = image.to_string();
        let existing = self.read_entry(&self.entry_dir(&normalized))?;

        if image.registry.is_none() {
            return existing.ok_or(StoreError::NotFound {
                reference: normalized,
            });
        }

        let digest = puller.resolve_digest(&image).await?;
        if let Some(stored) = existing.filter(|s| s.id == digest) {
            return Ok(stored);
        }

        tracing::info!(image = %normalized, %digest, "pulling base image");
        let staging = self.stage()?;
        let rootfs = staging.rootfs();
        let scratch = staging.scratch();
        for dir in [&rootfs, &scratch] {
            fs::create_dir(dir).map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let pulled = puller.pull(&image, &rootfs, &scratch).await?;
        self.commit(
            staging,
            &normalized,
            &pulled.digest,
            "registry",
            &pulled.config,
        )
    }

    /// Starts a new entry in the staging area.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the staging directory cannot be made.
    pub fn stage(&self) -> Result<Staging, StoreError> {
        let tmp = self.root.join("tmp");
        let dir = tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(&tmp)
            .map_err(|source| StoreError::Io { path: tmp, source })?;
        Ok(Staging { dir })
    }

    /// Moves a filled staging entry into place under `reference`, replacing
    /// an older entry. If another process committed the same reference
    /// meanwhile with the same id, that entry is kept.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the entry cannot be written or moved.
    pub fn commit(
        &self,
        staging: Staging,
        reference: &str,
        id: &str,
        source: &str,
        config: &ImageConfig,
    ) -> Result<StoredImage, StoreError> {
        let image = ImageRef::parse(reference)?;
        let reference = image.to_string();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };

        let _ = fs::remove_dir_all(staging.scratch());
        let meta = Meta {
            reference: reference.clone(),
            id: id.to_owned(),
            source: source.to_owned(),
        };
        let dir = staging.dir.path();
        write_json(&dir.join("config.json"), config)?;
        write_json(&dir.join("image.json"), &meta)?;

        let target = self.entry_dir(&reference);
        if let Some(existing) = self.read_entry(&target)? {
            if existing.id == id {
                return Ok(existing);
            }
            // Swap: move the old entry aside first, then remove it.
            // Limitation: a build still copying the old entry's rootfs fails and must be retried.
            let trash = self.stage()?;
            let aside = trash.dir.path().join("old");
            fs::rename(&target, &aside).map_err(io(&target))?;
        }

        let kept = staging.dir.keep();
        match fs::rename(&kept, &target) {
            Ok(()) => {}
            Err(e) => {
                let _ = fs::remove_dir_all(&kept);
                match self.read_entry(&target)? {
                    Some(existing) => return Ok(existing),
                    None => {
                        return Err(StoreError::Io {
                            path: target,
                            source: e,
                        })
                    }
                }
            }
        }
        self.read_entry(&target)?
            .ok_or(StoreError::NotFound { reference })
    }

    /// Removes an image from the store; a missing one is not an error.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when it cannot be removed.
    pub fn remove(&self, reference: &str) -> Result<(), StoreError> {
        let image = ImageRef::parse(reference)?;
        let target = self.entry_dir(&image.to_string());
        if !target.exists() {
            return Ok(());
        }
        let trash = self.stage()?;
        let aside = trash.dir.path().join("old");
        fs::rename(&target, &aside).map_err(|source| StoreError::Io {
            path: target,
            source,
        })
    }

    fn entry_dir(&self, normalized: &str) -> PathBuf {
        self.root.join("images").join(escape(normalized))
    }

    fn read_entry(&self, dir: &Path) -> Result<Option<StoredImage>, StoreError> {
        let meta_path = dir.join("image.json");
        let meta: Meta = match read_json(&meta_path)? {
            Some(meta) => meta,
            None => return Ok(None),
        };
        let config_path = dir.join("config.json");
        let config: ImageConfig = read_json(&config_path)?.unwrap_or_default();
        Ok(Some(StoredImage {
            reference: meta.reference,
            id: meta.id,
            source: meta.source,
            rootfs: dir.join("rootfs"),
            config,
        }))
    }
}

/// Makes a reference safe as one directory name, reversibly.
fn escape(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len());
    for c in reference.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            ':' => out.push_str("%3A"),
            '@' => out.push_str("%40"),
            c => out.push(c),
        }
    }
    out
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StoreError> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    fs::write(path, text).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::oci::RegistryConfig;

    fn commit_fake(store: &ImageStore, reference: &str, id: &str, file: &str) -> StoredImage {
        let staging = store.stage().unwrap();
        fs::create_dir(staging.rootfs()).unwrap();
        fs::write(staging.rootfs().join(file), id).unwrap();
        let config = ImageConfig {
            cmd: vec!["sh".into()],
            ..ImageConfig::default()
        };
        store
            .commit(staging, reference, id, "test", &config)
            .unwrap()
    }

    #[test]
    fn committed_images_are_found_by_normalized_reference() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let stored = commit_fake(&store, "busybox", "id-1", "marker");

        assert_eq!(stored.reference, "busybox:latest");
        let got = store.get("busybox:latest").unwrap().unwrap();
        assert_eq!(got, stored);
        assert_eq!(got.config.cmd, vec!["sh"]);
        assert!(got.rootfs.join("marker").exists());
        assert_eq!(store.list().unwrap(), vec!["busybox:latest"]);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_new_id_replaces_the_entry_and_the_same_id_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        commit_fake(&store, "127.0.0.1:5000/x:1", "id-1", "one");
        let same = commit_fake(&store, "127.0.0.1:5000/x:1", "id-1", "other");
        assert!(
            same.rootfs.join("one").exists(),
            "same id: the first entry stays"
        );

        let newer = commit_fake(&store, "127.0.0.1:5000/x:1", "id-2", "two");
        assert!(newer.rootfs.join("two").exists());
        assert!(!newer.rootfs.join("one").exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_bare_name_missing_from_the_store_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let puller = Puller::new(RegistryConfig::default());
        let err = store.resolve("debian:12", &puller).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "base image debian:12 not found: it is not in the local image store and names no \
             registry (`hearth image seed` adds debian:12 and busybox)"
        );

        commit_fake(&store, "debian:12", "id", "f");
        assert_eq!(store.resolve("debian:12", &puller).await.unwrap().id, "id");
    }

    #[test]
    fn references_escape_to_one_directory_name() {
        assert_eq!(
            escape("127.0.0.1:5000/a/b:1"),
            "127.0.0.1%3A5000%2Fa%2Fb%3A1"
        );
        assert_eq!(escape("a@sha256:x"), "a%40sha256%3Ax");
    }
}
