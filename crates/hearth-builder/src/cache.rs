//! The build step cache: step keys, and each step's file-system diff kept
//! on disk under a size cap with least-recently-used eviction.
//!
//! A step's key is a SHA-256 over its parent's key (the chain goes back to
//! the base image's id), the instruction text after variable substitution,
//! the build arguments in scope, and for COPY and ADD the content hash of
//! every file they copy (path, type, mode, content or link target). Two
//! steps with one key produce the same file system.
//!
//! What is stored is the step's diff: an uncompressed OCI layer tar of what
//! it added, changed and removed (see [`crate::diff`]). A hit on step N is
//! replayed by applying the diffs of steps 1..N onto the base image. Steps
//! that only change the config (ENV, LABEL, …) store nothing: their effect
//! is recomputed from the Dockerfile.
//!
//! Layout under the cache directory:
//!
//! ```text
//! entries/<key>/layer.tar    the diff
//! entries/<key>/entry.json   key, instruction, size
//! entries/<key>/last-used    empty; its mtime is the LRU clock
//! staging/                   entries being written, renamed into entries/
//! ```
//!
//! Entries appear by rename, so readers never see half of one. Eviction
//! moves an entry into staging before deleting it, and spares the keys the
//! caller protects (the build in progress).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The default size cap: 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// Why the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file-system failure.
    #[error("build cache: cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

/// A step's cache key: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key at the start of a stage built on an image with this id.
    pub fn for_base(image_id: &str) -> CacheKey {
        let mut hasher = Sha256::new();
        field(&mut hasher, "hearth-base-v1");
        field(&mut hasher, image_id);
        CacheKey(hex::encode(hasher.finalize()))
    }

    /// The key of a step after `parent`.
    pub fn for_step(
        parent: &CacheKey,
        instruction: &str,
        args: &[(String, String)],
        sources: Option<&str>,
    ) -> CacheKey {
        let mut hasher = Sha256::new();
        field(&mut hasher, "hearth-step-v1");
        field(&mut hasher, &parent.0);
        field(&mut hasher, instruction);

        let mut args: Vec<_> = args.iter().collect();
        args.sort();
        field(&mut hasher, &args.len().to_string());
        for (name, value) in args {
            field(&mut hasher, name);
            field(&mut hasher, value);
        }

        field(&mut hasher, sources.unwrap_or("-"));
        CacheKey(hex::encode(hasher.finalize()))
    }

    /// The key as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0[..12])
    }
}

/// Hashes a length-prefixed field, so that field boundaries are unambiguous.
fn field(hasher: &mut Sha256, value: &str) {
    hasher.update((value.len() as u64).to_le_bytes());
    hasher.update(value.as_bytes());
}

/// A cached step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Its key.
    pub key: CacheKey,
    /// Its diff, a layer tar.
    pub layer: PathBuf,
    /// The diff's size in bytes.
    pub size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct EntryMeta {
    key: CacheKey,
    instruction: String,
    size: u64,
}

/// The step cache.
#[derive(Debug, Clone)]
pub struct StepCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl StepCache {
    /// Opens (creating if needed) a cache under `dir` capped at `max_bytes`.
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the directories cannot be created.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<StepCache, CacheError> {
        let dir = dir.into();
        for sub in ["entries", "staging"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|source| CacheError::Io { path, source })?;
        }
        Ok(StepCache { dir, max_bytes })
    }

    /// The size cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Finds a step and marks it used.
    pub fn lookup(&self, key: &CacheKey) -> Option<CacheEntry> {
        let dir = self.entry_dir(key);
        let layer = dir.join("layer.tar");
        let size = fs::metadata(&layer).ok()?.len();
        // Best effort: a missed touch only makes eviction less accurate.
        let _ = filetime::set_file_mtime(dir.join("last-used"), filetime::FileTime::now());
        Some(CacheEntry {
            key: key.clone(),
            layer,
            size,
        })
    }

    /// Stores a step: `write` fills its layer tar. An entry that appeared
    /// meanwhile under the same key wins. Evicts old entries afterwards,
    /// sparing `protect` and this one.
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`], or what `write` returned.
    pub fn insert(
        &self,
        key: &CacheKey,
        instruction: &str,
        protect: &HashSet<CacheKey>,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<CacheEntry, CacheError> {
        let staging_root = self.dir.join("staging");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        let staging = tempfile::Builder::new()
            .prefix("entry-")
            .tempdir_in(&staging_root)
            .map_err(io(&staging_root))?;

        let layer = staging.path().join("layer.tar");
        let file = fs::File::create(&layer).map_err(io(&layer))?;
        let mut out = BufWriter::new(file);
        write(&mut out).map_err(io(&layer))?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(io(&layer))?;
        let size = fs::metadata(&layer).map_err(io(&layer))?.len();

        let meta = EntryMeta {
            key: key.clone(),
            instruction: instruction.to_owned(),
            size,
        };
        let meta_path = staging.path().join("entry.json");
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| io::Error::other(e.to_string()));
        json.and_then(|bytes| fs::write(&meta_path, bytes))
            .map_err(io(&meta_path))?;
        let used = staging.path().join("last-used");
        fs::write(&used, b"").map_err(io(&used))?;

        let target = self.entry_dir(key);
        let kept = staging.keep();
        if fs::rename(&kept, &target).is_err() {
            // Someone else stored this key first; theirs is as good.
            let _ = fs::remove_dir_all(&kept);
        }

        let mut spare = protect.clone();
        spare.insert(key.clone());
        self.evict(&spare)?;
        self.lookup(key).ok_or_else(|| CacheError::Io {
            path: target,
            source: io::Error::other("entry vanished after insert"),
        })
    }

    /// Removes least-recently-used entries until the cache is under its
    /// cap, sparing `protect`. Returns how many were removed.
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the cache cannot be listed.
    pub fn evict(&self, protect: &HashSet<CacheKey>) -> Result<usize, CacheError> {
        let mut entries = self.list()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        entries.sort_by_key(|e| e.used);

        let mut removed = 0;
        for entry in entries {
            if total <= self.max_bytes {
                break;
            }
            if protect.contains(&entry.key) {
                continue;
            }
            if self.remove(&entry.key) {
                total = total.saturating_sub(entry.size);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The bytes all entries take.
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the cache cannot be listed.
    pub fn usage(&self) -> Result<u64, CacheError> {
        Ok(self.list()?.iter().map(|e| e.size).sum())
    }

    fn list(&self) -> Result<Vec<Listed>, CacheError> {
        let entries = self.dir.join("entries");
        let read = fs::read_dir(&entries).map_err(|source| CacheError::Io {
            path: entries,
            source,
        })?;
        let mut out = Vec::new();
        for entry in read.flatten() {
            let dir = entry.path();
            let Ok(size) = fs::metadata(dir.join("layer.tar")).map(|m| m.len()) else {
                continue;
            };
            let used = fs::metadata(dir.join("last-used"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Listed {
                key: CacheKey(entry.file_name().to_string_lossy().into_owned()),
                size,
                used,
            });
        }
        Ok(out)
    }

    /// Moves an entry out of sight, then deletes it.
    fn remove(&self, key: &CacheKey) -> bool {
        let Ok(trash) = tempfile::Builder::new()
            .prefix("evict-")
            .tempdir_in(self.dir.join("staging"))
        else {
            return false;
        };
        fs::rename(self.entry_dir(key), trash.path().join("entry")).is_ok()
    }

    fn entry_dir(&self, key: &CacheKey) -> PathBuf {
        self.dir.join("entries").join(&key.0)
    }
}

struct Listed {
    key: CacheKey,
    size: u64,
    used: SystemTime,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey::for_step(&CacheKey::for_base("img"), &format!("RUN {n}"), &[], None)
    }

    fn put(cache: &StepCache, k: &CacheKey, bytes: usize) {
        cache
            .insert(k, "RUN x", &HashSet::new(), |w| {
                w.write_all(&vec![0u8; bytes])
            })
            .unwrap();
    }

    #[test]
    fn keys_depend_on_every_input() {
        let base = CacheKey::for_base("sha256:a");
        let k = CacheKey::for_step(&base, "RUN x", &[("A".into(), "1".into())], None);
        assert_eq!(
            k,
            CacheKey::for_step(&base, "RUN x", &[("A".into(), "1".into())], None)
        );
        assert_ne!(
            k,
            CacheKey::for_step(
                &CacheKey::for_base("sha256:b"),
                "RUN x",
                &[("A".into(), "1".into())],
                None
            )
        );
        assert_ne!(
            k,
            CacheKey::for_step(&base, "RUN y", &[("A".into(), "1".into())], None)
        );
        assert_ne!(
            k,
            CacheKey::for_step(&base, "RUN x", &[("A".into(), "2".into())], None)
        );
        assert_ne!(
            k,
            CacheKey::for_step(&base, "RUN x", &[("A".into(), "1".into())], Some("h"))
        );
        assert_eq!(k.as_str().len(), 64);
    }

    #[test]
    fn inserted_entries_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::open(dir.path(), 1 << 20).unwrap();
        assert!(cache.lookup(&key(1)).is_none());
        put(&cache, &key(1), 100);
        let entry = cache.lookup(&key(1)).unwrap();
        assert_eq!(entry.size, 100);
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
    }

    #[test]
    fn least_recently_used_entries_are_evicted_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::open(dir.path(), 250).unwrap();
        put(&cache, &key(1), 100);
        put(&cache, &key(2), 100);
        // Make 1 older than 2, then use 1 so that 2 is the least recent.
        let old = filetime::FileTime::from_unix_time(1_000, 0);
        for k in [key(1), key(2)] {
            filetime::set_file_mtime(
                dir.path()
                    .join("entries")
                    .join(k.as_str())
                    .join("last-used"),
                old,
            )
            .unwrap();
        }
        cache.lookup(&key(1)).unwrap();

        put(&cache, &key(3), 100);
        assert!(cache.lookup(&key(1)).is_some());
        assert!(
            cache.lookup(&key(2)).is_none(),
            "the least recently used went first"
        );
        assert!(cache.lookup(&key(3)).is_some());
        assert!(cache.usage().unwrap() <= 250);
    }

    #[test]
    fn protected_and_new_entries_survive_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::open(dir.path(), 50).unwrap();
        put(&cache, &key(1), 100);
        let protect: HashSet<_> = [key(1)].into_iter().collect();
        cache
            .insert(&key(2), "RUN", &protect, |w| w.write_all(&[0; 100]))
            .unwrap();
        assert!(cache.lookup(&key(1)).is_some());
        assert!(cache.lookup(&key(2)).is_some());
    }
}
