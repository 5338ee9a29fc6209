//! Disk images: the ext4 image of a root directory, qcow2 overlays on it,
//! and flattening an overlay chain into one standalone qcow2.
//!
//! All three shell out to the real tools (`mkfs.ext4 -d` from e2fsprogs and
//! `qemu-img`), which need neither root nor loop devices. Chains stay two
//! deep: an image's frozen disk and one overlay per microVM.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;

/// The size of a microVM's root disk; the file is sparse, so unused space
/// costs nothing.
pub const DEFAULT_ROOT_DISK_BYTES: u64 = 8 << 30;

/// Errors of disk operations.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A tool could not be executed at all.
    #[error("cannot run {tool} (is it installed?)")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A tool ran and failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        /// The tool.
        tool: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },

    /// A file operation failed.
    #[error("disk i/o failed on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The source of an ext4 image is not a directory.
    #[error("not a directory: {0}")]
    NotADirectory(PathBuf),

    /// `qemu-img info` printed something unexpected.
    #[error("cannot read qemu-img info for {path}: {detail}")]
    Info {
        /// The image.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageInfo {
    /// The format (`raw`, `qcow2`, ...).
    pub format: String,
    /// The size the guest sees.
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    /// The backing file, for an overlay.
    #[serde(rename = "backing-filename")]
    pub backing_file: Option<PathBuf>,
}

/// Builds a sparse ext4 image of `size_bytes` at `out_image` holding the
/// tree at `src_dir` (ownership and modes as on disk).
///
/// # Errors
///
/// [`DiskError::NotADirectory`], [`DiskError::Io`] on the image file, and
/// [`DiskError::Tool`]/[`DiskError::Failed`] from `mkfs.ext4`.
pub async fn make_ext4(src_dir: &Path, out_image: &Path, size_bytes: u64) -> Result<(), DiskError> {
    if !src_dir.is_dir() {
        return Err(DiskError::NotADirectory(src_dir.to_owned()));
    }

    // A fresh, all-zero sparse file: lazy init is then safe and much faster.
    let file = std::fs::File::create(out_image).map_err(|e| io(out_image, e))?;
    file.set_len(size_bytes).map_err(|e| io(out_image, e))?;
    drop(file);

    let mut command = tokio::process::Command::new("mkfs.ext4");
    command
        .args([
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            "-d",
        ])
        .arg(src_dir)
        .arg(out_image);
    let result = run("mkfs.ext4", command).await;
    if result.is_err() {
        let _ = std::fs::remove_file(out_image);
    }
    result.map(drop)
}

/// Creates a qcow2 `overlay` whose backing file is `base` (recorded with
/// its format and as an absolute path).
///
/// # Errors
///
/// [`DiskError::Io`] when `base` cannot be resolved, and the errors of
/// `qemu-img`.
pub async fn create_overlay(base: &Path, overlay: &Path) -> Result<(), DiskError> {
    let base = std::fs::canonicalize(base).map_err(|e| io(base, e))?;
    let info = image_info(&base).await?;

    let mut command = tokio::process::Command::new("qemu-img");
    command.args(["create", "-q", "-f", "qcow2", "-F", &info.format, "-b"]);
    command.arg(&base).arg(overlay);
    run("qemu-img", command).await.map(drop)
}

/// Writes the whole chain under `overlay` as one standalone qcow2 at
/// `out`, and syncs it. Works while a VM holds `overlay` open (`-U`); the
/// result is consistent when that VM is paused.
///
/// # Errors
///
/// The errors of `qemu-img`, and [`DiskError::Io`] on syncing `out`.
pub async fn flatten(overlay: &Path, out: &Path) -> Result<(), DiskError> {
    let mut command = tokio::process::Command::new("qemu-img");
    command
        .args(["convert", "-U", "-O", "qcow2"])
        .arg(overlay)
        .arg(out);
    run("qemu-img", command).await?;

    let file = std::fs::File::open(out).map_err(|e| io(out, e))?;
    file.sync_all().map_err(|e| io(out, e))
}

/// Reads an image's format, virtual size and backing file.
///
/// # Errors
///
/// The errors of `qemu-img`, and [`DiskError::Info`] on output it cannot parse.
pub async fn image_info(path: &Path) -> Result<ImageInfo, DiskError> {
    let mut command = tokio::process::Command::new("qemu-img");
    command.args(["info", "-U", "--output=json"]).arg(path);
    let stdout = run("qemu-img", command).await?;
    serde_json::from_slice(&stdout).map_err(|e| DiskError::Info {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn io(path: &Path, source: std::io::Error) -> DiskError {
    DiskError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs a tool to completion and returns its stdout.
async fn run(
    tool: &'static str,
    mut command: tokio::process::Command,
) -> Result<Vec<u8>, DiskError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = command
        .output()
        .await
        .map_err(|source| DiskError::Tool { tool, source })?;
    if !output.status.success() {
        return Err(DiskError::Failed {
            tool,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ext4_overlay_and_flatten_chain() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("root");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hello"), "hi\n").unwrap();

        let base = dir.path().join("base.ext4");
        make_ext4(&src, &base, 64 << 20).await.unwrap();
        // Sparse: far fewer blocks allocated than the size.
        let meta = std::fs::metadata(&base).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 32 << 20);

        let overlay = dir.path().join("vm.qcow2");
        create_overlay(&base, &overlay).await.unwrap();
        let info = image_info(&overlay).await.unwrap();
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.virtual_size, 64 << 20);
        assert_eq!(
            info.backing_file.unwrap(),
            std::fs::canonicalize(&base).unwrap()
        );

        let flat = dir.path().join("flat.qcow2");
        flatten(&overlay, &flat).await.unwrap();
        let info = image_info(&flat).await.unwrap();
        assert_eq!(info.backing_file, None);
        assert_eq!(info.virtual_size, 64 << 20);
    }

    #[tokio::test]
    async fn missing_source_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = make_ext4(&dir.path().join("nope"), &dir.path().join("x"), 1 << 20)
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("not a directory"), "{err}");
    }
}
