//! The code artifact: where a build's context comes from, and how a zip is
//! unpacked without trusting it.
//!
//! An artifact is a local directory, a local `.zip`, or `s3://bucket/key`
//! on a configured S3-compatible endpoint (never a default AWS host). It
//! lands in a build directory that must not exist yet: everything is written
//! into a temporary directory beside it and renamed into place only when
//! the whole artifact is in and has a `Dockerfile` at its root, so a failure
//! leaves nothing behind.
//!
//! A zip is hostile until proven otherwise ([`extract_zip`]): entries with
//! absolute paths or `..`, symlinks that point outside, entries that pass
//! through a symlink, and duplicates are refused; the entry count and the
//! bytes actually written (not the sizes the headers claim) are capped, so a
//! zip bomb stops at the limit.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStoreExt, RetryConfig};

use crate::fsutil;

mod unzip;
pub use unzip::extract_zip;

/// The default cap on a zip's uncompressed size: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// The default cap on a zip's entry count.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// The longest symlink target a zip entry may carry.
const MAX_LINK_TARGET: u64 = 4096;

/// Why an artifact could not be fetched or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A location that is neither `s3://bucket/key` nor a local path.
    #[error("artifact location {location:?} is not s3://bucket/key or a local path")]
    BadLocation {
        /// The location as given.
        location: String,
    },
    /// A local artifact that does not exist.
    #[error("artifact {path} does not exist")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file is not a zip archive.
    #[error("artifact {path} is not a zip file")]
    NotZip {
        /// The file.
        path: PathBuf,
        /// What the zip reader said.
        #[source]
        source: zip::result::ZipError,
    },
    /// The artifact has no `Dockerfile` at its root.
    #[error("the artifact has no Dockerfile at its root")]
    NoDockerfile,
    /// An entry with an absolute path.
    #[error("zip entry {entry:?} has an absolute path")]
    AbsolutePath {
        /// The entry's name.
        entry: String,
    },
    /// An entry with a `..` component.
    #[error("zip entry {entry:?} contains a .. component")]
    ParentDir {
        /// The entry's name.
        entry: String,
    },
    /// A symlink entry whose target is absolute or climbs out.
    #[error("zip entry {entry:?} is a symlink to {target:?}, outside the artifact")]
    SymlinkEscape {
        /// The entry's name.
        entry: String,
        /// The link's target.
        target: String,
    },
    /// An entry under a path that an earlier entry made a symlink.
    #[error("zip entry {entry:?} lies under the symlink {link:?}")]
    ThroughSymlink {
        /// The entry's name.
        entry: String,
        /// The symlink on its path.
        link: String,
    },
    /// Two entries with one path.
    #[error("zip entry {entry:?} appears twice")]
    Duplicate {
        /// The entry's name.
        entry: String,
    },
    /// More entries than allowed.
    #[error("the zip has {count} entries, more than the limit of {limit}")]
    TooManyEntries {
        /// Entries in the archive.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes written passed the limit.
    #[error("zip entry {entry:?} takes the unpacked size past the limit of {limit} bytes")]
    TooLarge {
        /// The entry being written when the limit was hit.
        entry: String,
        /// The limit.
        limit: u64,
    },
    /// An encrypted entry.
    #[error("zip entry {entry:?} is encrypted")]
    Encrypted {
        /// The entry's name.
        entry: String,
    },
    /// An entry that could not be read or written.
    #[error("zip entry {entry:?} cannot be extracted")]
    Entry {
        /// The entry's name.
        entry: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The destination exists already.
    #[error("build directory {path} already exists")]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// A local file-system failure outside any one entry.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// An `s3://` artifact without a configured endpoint.
    #[error("no S3 endpoint is configured for s3://{bucket}/{key}")]
    NoS3Endpoint {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The object does not exist.
    #[error("s3://{bucket}/{key} does not exist")]
    S3NotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The object store failed.
    #[error("cannot fetch s3://{bucket}/{key}")]
    S3 {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The object is larger than the unpacked-size limit.
    #[error("s3://{bucket}/{key} is larger than {limit} bytes")]
    S3TooLarge {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The limit.
        limit: u64,
    },
}

/// Where a code artifact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSource {
    /// A local directory, used as the context as it is.
    Directory(PathBuf),
    /// A local zip file.
    Zip(PathBuf),
    /// An object on the configured S3-compatible endpoint.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
}

impl ArtifactSource {
    /// Parses `s3://bucket/key`, or a local path (a directory, or a file
    /// taken to be a zip).
    ///
    /// # Errors
    ///
    /// [`ArtifactError::BadLocation`] for `s3://` without bucket or key,
    /// [`ArtifactError::NotFound`] for a local path that does not exist.
    pub fn parse(location: &str) -> Result<Self, ArtifactError> {
        if let Some(rest) = location.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(ArtifactSource::S3 {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    })
                }
                _ => Err(ArtifactError::BadLocation {
                    location: location.to_owned(),
                }),
            };
        }
        if location.is_empty() || location.contains("://") {
            return Err(ArtifactError::BadLocation {
                location: location.to_owned(),
            });
        }

        let path = PathBuf::from(location);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(ArtifactSource::Directory(path)),
            Ok(_) => Ok(ArtifactSource::Zip(path)),
            Err(_) => Err(ArtifactError::NotFound { path }),
        }
    }
}

/// An S3-compatible endpoint and how to sign for it.
#[derive(Clone)]
pub struct S3Settings {
    /// The endpoint URL, such as `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The signing region.
    pub region: String,
    /// Access key id and secret; `None` sends unsigned requests.
    pub credentials: Option<(String, String)>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.credentials.as_ref().map(|c| &c.0))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Caps on what an artifact may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// The most bytes all files together may hold.
    pub max_bytes: u64,
    /// The most entries (files, directories, symlinks) the zip may have.
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What an unpacked artifact holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArtifactSummary {
    /// Entries written.
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// Fetches artifacts into build directories.
#[derive(Debug, Clone, Default)]
pub struct ArtifactFetcher {
    /// The S3-compatible endpoint for `s3://` artifacts.
    pub s3: Option<S3Settings>,
    /// Caps on the unpacked artifact.
    pub limits: ExtractLimits,
}

impl ArtifactFetcher {
    /// Brings the artifact into `dest`, which must not exist, and checks
    /// that it has a `Dockerfile` at its root.
    ///
    /// # Errors
    ///
    /// [`ArtifactError`]; nothing is left at `dest` on failure.
    pub async fn fetch(
        &self,
        source: &ArtifactSource,
        dest: &Path,
    ) -> Result<ArtifactSummary, ArtifactError> {
        match source {
            ArtifactSource::Directory(dir) => {
                let (dir, dest) = (dir.clone(), dest.to_path_buf());
                blocking(move || copy_directory(&dir, &dest)).await
            }
            ArtifactSource::Zip(zip) => {
                let (zip, dest, limits) = (zip.clone(), dest.to_path_buf(), self.limits);
                blocking(move || extract_zip(&zip, &dest, &limits)).await
            }
            ArtifactSource::S3 { bucket, key } => self.fetch_s3(bucket, key, dest).await,
        }
    }

    async fn fetch_s3(
        &self,
        bucket: &str,
        key: &str,
        dest: &Path,
    ) -> Result<ArtifactSummary, ArtifactError> {
        let s3_error = |source: object_store::Error| match source {
            object_store::Error::NotFound { .. } => ArtifactError::S3NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            },
            other => ArtifactError::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                source: Box::new(other),
            },
        };
        let settings = self
            .s3
            .as_ref()
            .ok_or_else(|| ArtifactError::NoS3Endpoint {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            })?;
        refuse_existing(dest)?;

        let store = s3_store(settings, bucket).map_err(s3_error)?;
        let result = store
            .get(&object_store::path::Path::from(key))
            .await
            .map_err(s3_error)?;

        // Download beside the destination, then unpack from the local copy.
        let parent = parent_of(dest);
        let download = tempfile::Builder::new()
            .prefix(".hearth-artifact-")
            .suffix(".zip")
            .tempfile_in(&parent)
            .map_err(|source| ArtifactError::Io {
                path: parent.clone(),
                source,
            })?;
        let mut file = download.as_file();
        let mut stream = result.into_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(s3_error)?;
            size += chunk.len() as u64;
            if size > self.limits.max_bytes {
                return Err(ArtifactError::S3TooLarge {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    limit: self.limits.max_bytes,
                });
            }
            file.write_all(&chunk).map_err(|source| ArtifactError::Io {
                path: download.path().to_path_buf(),
                source,
            })?;
        }

        let (zip, dest, limits) = (
            download.path().to_path_buf(),
            dest.to_path_buf(),
            self.limits,
        );
        let summary = blocking(move || extract_zip(&zip, &dest, &limits)).await;
        drop(download);
        summary
    }
}

/// Builds the object store client for one bucket.
fn s3_store(
    settings: &S3Settings,
    bucket: &str,
) -> Result<object_store::aws::AmazonS3, object_store::Error> {
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(15),
        ..RetryConfig::default()
    };
    let mut builder = AmazonS3Builder::new()
        .with_endpoint(&settings.endpoint)
        .with_region(&settings.region)
        .with_bucket_name(bucket)
        .with_allow_http(settings.allow_http)
        .with_virtual_hosted_style_request(false)
        .with_retry(retry);

    // Without keys, sign nothing rather than look for credentials elsewhere.
    builder = match &settings.credentials {
        Some((id, secret)) => builder
            .with_access_key_id(id)
            .with_secret_access_key(secret),
        None => builder.with_skip_signature(true),
    };
    builder.build()
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(job).await.unwrap_or_else(|e| {
        Err(ArtifactError::Io {
            path: PathBuf::new(),
            source: io::Error::other(e.to_string()),
        })
    })
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn refuse_existing(dest: &Path) -> Result<(), ArtifactError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(ArtifactError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    Ok(())
}

/// A temporary directory beside `dest`, renamed onto it by [`commit`].
fn staging_dir(dest: &Path) -> Result<tempfile::TempDir, ArtifactError> {
    refuse_existing(dest)?;
    let parent = parent_of(dest);
    tempfile::Builder::new()
        .prefix(".hearth-artifact-")
        .tempdir_in(&parent)
        .map_err(|source| ArtifactError::Io {
            path: parent,
            source,
        })
}

/// Checks for the Dockerfile and moves the staging directory into place.
fn commit(staging: tempfile::TempDir, dest: &Path) -> Result<(), ArtifactError> {
    let dockerfile = fs::symlink_metadata(staging.path().join("Dockerfile"));
    if !dockerfile.map(|m| m.is_file()).unwrap_or(false) {
        return Err(ArtifactError::NoDockerfile);
    }
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755)).map_err(|source| {
        ArtifactError::Io {
            path: staging.path().to_path_buf(),
            source,
        }
    })?;

    let kept = staging.keep();
    fs::rename(&kept, dest).map_err(|source| {
        let _ = fs::remove_dir_all(&kept);
        ArtifactError::Io {
            path: dest.to_path_buf(),
            source,
        }
    })
}

fn copy_directory(dir: &Path, dest: &Path) -> Result<ArtifactSummary, ArtifactError> {
    if !dir.is_dir() {
        return Err(ArtifactError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let staging = staging_dir(dest)?;
    let inner = staging.path().join("context");
    fsutil::copy_tree(dir, &inner).map_err(|source| ArtifactError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    // The copy sits one level down so that its root keeps the source's mode.
    let outer = staging.keep();
    let result = (|| {
        if !fs::symlink_metadata(inner.join("Dockerfile"))
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            return Err(ArtifactError::NoDockerfile);
        }
        fs::rename(&inner, dest).map_err(|source| ArtifactError::Io {
            path: dest.to_path_buf(),
            source,
        })
    })();
    let _ = fs::remove_dir_all(&outer);
    result.map(|()| ArtifactSummary::default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            ArtifactSource::parse("s3://b/k/app.zip").unwrap(),
            ArtifactSource::S3 {
                bucket: "b".into(),
                key: "k/app.zip".into()
            }
        );
        assert!(matches!(
            ArtifactSource::parse("s3://b"),
            Err(ArtifactError::BadLocation { .. })
        ));
        assert!(matches!(
            ArtifactSource::parse("http://x/y"),
            Err(ArtifactError::BadLocation { .. })
        ));
        assert!(matches!(
            ArtifactSource::parse("/no/such/file.zip"),
            Err(ArtifactError::NotFound { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ArtifactSource::parse(dir.path().to_str().unwrap()).unwrap(),
            ArtifactSource::Directory(_)
        ));
    }
}
