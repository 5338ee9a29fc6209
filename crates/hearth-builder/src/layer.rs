//! Applying a layer tar onto a root file system, with OCI semantics.
//!
//! Entries are written in order: directories, regular files, symlinks, hard
//! links and device nodes, with their mode, owner (when running as root, as
//! builds do), and mtime. Paths resolve inside the root (see
//! [`crate::fsutil`]), so a symlink in a lower layer cannot carry a write
//! out of it, and a `..` that would climb out is an error.
//!
//! Whiteouts follow the OCI image spec: `.wh.<name>` deletes `<name>` from
//! the lower layers; `.wh..wh..opq` hides everything the lower layers had in
//! its directory. Neither touches what the same layer wrote, whatever the
//! order of the entries.
//!
//! Limitation: extended attributes (such as file capabilities) in a layer
//! are not applied.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use tar::EntryType;

use crate::fsutil::{self, clean_relative, mkdir_in_root, remove_any, resolve_in_root};

/// The prefix of a whiteout file.
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of an opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The archive itself is unreadable.
    #[error("cannot read the layer archive")]
    Read(#[source] io::Error),
    /// An entry whose path climbs out of the root.
    #[error("layer entry {path} points outside the root")]
    Escape {
        /// The entry's path as written.
        path: String,
    },
    /// An entry that could not be written.
    #[error("cannot apply layer entry {path}")]
    Entry {
        /// The entry's path as written.
        path: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// An entry of a kind that has no place in a root file system.
    #[error("layer entry {path} has unsupported type {kind:?}")]
    UnsupportedType {
        /// The entry's path.
        path: String,
        /// The tar type byte.
        kind: u8,
    },
}

/// How to apply a layer.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Treat `.wh.` entries as whiteouts (true for image layers and cached
    /// diffs; false for ADD of an archive, which copies them as files).
    pub whiteouts: bool,
    /// Set owners from the archive (needs root).
    pub chown: bool,
    /// Create device nodes; when false they are skipped (a build VM's
    /// export is never trusted with one).
    pub devices: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: true,
            chown: nix::unistd::geteuid().is_root(),
            devices: true,
        }
    }
}

/// What applying a layer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries written.
    pub entries: u64,
    /// Paths deleted by whiteouts (opaque directories count once).
    pub whiteouts: u64,
}

/// Applies an uncompressed layer tar read from `reader` onto `root`.
///
/// # Errors
///
/// [`LayerError`] naming the entry that failed.
pub fn apply_layer(
    root: &Path,
    reader: impl Read,
    options: ApplyOptions,
) -> Result<LayerStats, LayerError> {
    let mut archive = tar::Archive::new(reader);
    let mut state = Applier {
        root,
        options,
        written: HashSet::new(),
        opaque: Vec::new(),
        dir_times: Vec::new(),
        stats: LayerStats::default(),
    };

    for entry in archive.entries().map_err(LayerError::Read)? {
        let mut entry = entry.map_err(LayerError::Read)?;
        state.entry(&mut entry)?;
    }

    state.finish()
}

/// Applies a layer file, gzip-compressed or not (told by its first bytes).
///
/// # Errors
///
/// [`LayerError`]; a zstd layer is [`LayerError::Read`].
pub fn apply_layer_file(
    root: &Path,
    path: &Path,
    options: ApplyOptions,
) -> Result<LayerStats, LayerError> {
    let mut file = fs::File::open(path).map_err(LayerError::Read)?;
    let mut magic = [0u8; 4];
    let n = read_prefix(&mut file, &mut magic).map_err(LayerError::Read)?;
    let file = fs::File::open(path).map_err(LayerError::Read)?;
    let reader = io::BufReader::new(file);

    match &magic[..n] {
        [0x1f, 0x8b, ..] => apply_layer(root, flate2::read::GzDecoder::new(reader), options),
        // Limitation: zstd layers are refused; pulling such images needs a zstd decoder here.
        [0x28, 0xb5, 0x2f, 0xfd] => Err(LayerError::Read(io::Error::other(
            "zstd-compressed layers are not supported",
        ))),
        _ => apply_layer(root, reader, options),
    }
}

/// Reads up to `buf.len()` bytes; returns how many.
pub(crate) fn read_prefix(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

struct Applier<'a> {
    root: &'a Path,
    options: ApplyOptions,
    /// Absolute paths this layer wrote, which its own whiteouts spare.
    written: HashSet<PathBuf>,
    /// Opaque directories, processed once the layer is complete.
    opaque: Vec<PathBuf>,
    dir_times: Vec<(PathBuf, FileTime)>,
    stats: LayerStats,
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }

        let rel = clean_relative(Path::new(&raw))
            .ok_or_else(|| LayerError::Escape { path: raw.clone() })?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            // The root itself (`./`): nothing to create.
            return Ok(());
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let fail = |source: io::Error| LayerError::Entry {
            path: raw.clone(),
            source,
        };

        if self.options.whiteouts && name.starts_with(WHITEOUT_PREFIX) {
            let parent = resolve_in_root(self.root, parent_rel, true).map_err(fail)?;
            if name == OPAQUE_MARKER {
                self.opaque.push(parent);
            } else {
                let target = parent.join(&name[WHITEOUT_PREFIX.len()..]);
                remove_except(&target, &self.written).map_err(fail)?;
            }
            self.stats.whiteouts += 1;
            return Ok(());
        }

        let parent = mkdir_in_root(self.root, parent_rel).map_err(fail)?;
        let dst = parent.join(&name);
        self.write(entry, kind, &dst, &raw)?;
        self.written.insert(dst);
        self.stats.entries += 1;
        Ok(())
    }

    fn write<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        dst: &Path,
        raw: &str,
    ) -> Result<(), LayerError> {
        let fail = |source: io::Error| LayerError::Entry {
            path: raw.to_owned(),
            source,
        };
        let header = entry.header();
        let mode = header.mode().map_err(fail)? & 0o7777;
        // Some archivers leave these fields blank; blank means 0.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let seconds = header.mtime().unwrap_or(0) as i64;
        let mtime = pax_mtime(entry).unwrap_or_else(|| FileTime::from_unix_time(seconds, 0));
        let header = entry.header();
        let existing = fs::symlink_metadata(dst).ok();

        match kind {
            EntryType::Directory => {
                match &existing {
                    Some(meta) if meta.is_dir() => {}
                    Some(_) => {
                        remove_any(dst).map_err(fail)?;
                        fs::create_dir(dst).map_err(fail)?;
                    }
                    None => fs::create_dir(dst).map_err(fail)?,
                }
                self.owner_and_mode(dst, uid, gid, mode).map_err(fail)?;
                self.dir_times.push((dst.to_path_buf(), mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_any(dst).map_err(fail)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(dst)
                    .map_err(fail)?;
                io::copy(entry, &mut file).map_err(fail)?;
                drop(file);
                self.owner_and_mode(dst, uid, gid, mode).map_err(fail)?;
                filetime::set_file_mtime(dst, mtime).map_err(fail)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(fail)?
                    .ok_or_else(|| fail(io::Error::other("symlink without a target")))?;
                remove_any(dst).map_err(fail)?;
                std::os::unix::fs::symlink(&target, dst).map_err(fail)?;
                if self.options.chown {
                    std::os::unix::fs::lchown(dst, Some(uid as u32), Some(gid as u32))
                        .map_err(fail)?;
                }
                filetime::set_symlink_file_times(dst, mtime, mtime).map_err(fail)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(fail)?
                    .ok_or_else(|| fail(io::Error::other("hard link without a target")))?;
                let target_rel = clean_relative(&target).ok_or_else(|| LayerError::Escape {
                    path: raw.to_owned(),
                })?;
                let source = resolve_in_root(self.root, &target_rel, false).map_err(fail)?;
                if existing.is_some() && same_file(&source, dst) {
                    return Ok(());
                }
                remove_any(dst).map_err(fail)?;
                fs::hard_link(&source, dst).map_err(fail)?;
            }
            EntryType::Char | EntryType::Block if !self.options.devices => {
                tracing::warn!(path = raw, "skipping a device node");
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.options.chown && kind != EntryType::Fifo {
                    // Limitation: device nodes need root; without it they are skipped.
                    tracing::warn!(path = raw, "skipping a device node: not running as root");
                    return Ok(());
                }
                remove_any(dst).map_err(fail)?;
                let dev = nix::sys::stat::makedev(
                    header.device_major().map_err(fail)?.unwrap_or(0).into(),
                    header.device_minor().map_err(fail)?.unwrap_or(0).into(),
                );
                make_node(dst, kind, mode, dev).map_err(fail)?;
                self.owner_and_mode(dst, uid, gid, mode).map_err(fail)?;
            }
            other => {
                return Err(LayerError::UnsupportedType {
                    path: raw.to_owned(),
                    kind: other.as_byte(),
                })
            }
        }
        Ok(())
    }

    fn owner_and_mode(&self, dst: &Path, uid: u64, gid: u64, mode: u32) -> io::Result<()> {
        if self.options.chown {
            std::os::unix::fs::lchown(dst, Some(uid as u32), Some(gid as u32))?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))
    }

    fn finish(mut self) -> Result<LayerStats, LayerError> {
        for dir in std::mem::take(&mut self.opaque) {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.dir_error(&dir, e)),
            };
            for child in entries {
                let child = child.map_err(|e| self.dir_error(&dir, e))?;
                remove_except(&child.path(), &self.written).map_err(|e| self.dir_error(&dir, e))?;
            }
        }

        for (dir, mtime) in self.dir_times.iter().rev() {
            filetime::set_file_mtime(dir, *mtime).map_err(|e| self.dir_error(dir, e))?;
        }
        Ok(self.stats)
    }

    fn dir_error(&self, dir: &Path, source: io::Error) -> LayerError {
        let rel = dir.strip_prefix(self.root).unwrap_or(dir);
        LayerError::Entry {
            path: format!("{}/{OPAQUE_MARKER}", rel.display()),
            source,
        }
    }
}

/// Removes `path` from the lower layers: everything at or under it except
/// what the current layer wrote.
fn remove_except(path: &Path, written: &HashSet<PathBuf>) -> io::Result<()> {
    if written.contains(path) {
        return Ok(());
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if !written.iter().any(|w| w.starts_with(path)) {
        return fs::remove_dir_all(path);
    }
    for child in fs::read_dir(path)? {
        remove_except(&child?.path(), written)?;
    }
    Ok(())
}

/// The mtime of a PAX `mtime` record (`secs[.fraction]`), which keeps the
/// nanoseconds a header's whole seconds lose.
fn pax_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<FileTime> {
    let records = entry.pax_extensions().ok()??;
    let value = records
        .filter_map(Result::ok)
        .find(|r| r.key() == Ok("mtime"))?
        .value()
        .ok()?
        .to_owned();
    parse_pax_time(&value)
}

/// Parses `secs[.fraction]`, keeping up to nanoseconds.
fn parse_pax_time(value: &str) -> Option<FileTime> {
    let (secs, fraction) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain("000000000".chars())
        .take(9)
        .collect();
    let nanos: u32 = digits.parse().ok()?;
    Some(FileTime::from_unix_time(secs, nanos))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn make_node(dst: &Path, kind: EntryType, mode: u32, dev: u64) -> io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let flag = match kind {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    mknod(dst, flag, Mode::from_bits_truncate(mode), dev)
        .map_err(|e| fsutil::with_path(e.into(), dst))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
