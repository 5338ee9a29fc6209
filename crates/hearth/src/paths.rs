//! Where hearth keeps its files.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The data directory: `$HEARTH_DATA`, else `/var/lib/hearth` as root and
/// `~/.local/share/hearth` otherwise.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEARTH_DATA") {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/hearth");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/hearth")
}

/// The guest assets: a kernel and an initramfs whose `/init` is the agent.
pub struct Assets {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
}

/// The guest assets directory: `$HEARTH_ASSETS`, else `<data>/assets`.
pub fn assets_dir() -> PathBuf {
    match std::env::var_os("HEARTH_ASSETS") {
        Some(dir) => PathBuf::from(dir),
        None => data_dir().join("assets"),
    }
}

/// The guest assets, checked to exist.
///
/// # Errors
///
/// Fails, naming the missing file, when the assets were not built.
pub fn assets() -> Result<Assets> {
    let dir = assets_dir();
    let assets = Assets {
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio.gz"),
    };
    for file in [&assets.kernel, &assets.initramfs] {
        if !file.is_file() {
            bail!(
                "guest assets missing: {} not found (run scripts/setup.sh, or set HEARTH_ASSETS)",
                file.display()
            );
        }
    }
    Ok(assets)
}

/// Where the accelerator probe caches its answer.
pub fn accel_cache() -> PathBuf {
    data_dir().join("accel.json")
}
