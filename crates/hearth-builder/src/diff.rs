//! What a build step changed in a root file system, as an OCI layer tar.
//!
//! Before a step runs, [`Snapshot::scan`] records every path's metadata;
//! afterwards [`Snapshot::write_diff`] compares the tree with it and writes
//! the difference: added and changed entries as they now are, removed ones
//! as `.wh.` whiteouts. A file counts as changed when its type, mode,
//! owner, size, mtime, link target or device number differ (Docker's
//! "naive diff" rule; content is not compared), so a step runner must keep
//! mtimes truthful. Hard links inside the diff stay hard links.
//!
//! Applying the diff with [`crate::layer::apply_layer`] onto the tree as it
//! was before the step reproduces the tree after it, mtimes to the
//! nanosecond (a PAX `mtime` record carries what the header cannot).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header, HeaderMode};

use crate::fsutil::with_path;
use crate::layer::WHITEOUT_PREFIX;

/// One path's recorded metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    link: Option<PathBuf>,
    dev: u64,
    ino: u64,
    nlink: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// The recorded state of a tree.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    entries: BTreeMap<PathBuf, Meta>,
}

/// What a diff holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Entries added or changed.
    pub changed: u64,
    /// Whiteouts for removed paths.
    pub removed: u64,
}

impl DiffStats {
    /// Whether the step changed nothing.
    pub fn is_empty(&self) -> bool {
        self.changed == 0 && self.removed == 0
    }
}

impl Snapshot {
    /// Records the metadata of every path under `root`.
    ///
    /// # Errors
    ///
    /// The first I/O failure, naming the path.
    pub fn scan(root: &Path) -> io::Result<Snapshot> {
        let mut entries = BTreeMap::new();
        scan_dir(root, Path::new(""), &mut entries)?;
        Ok(Snapshot { entries })
    }

    /// How many paths the snapshot holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot is of an empty tree.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes, as a layer tar, how `root` now differs from this snapshot.
    ///
    /// # Errors
    ///
    /// The first I/O failure, naming the path.
    pub fn write_diff(&self, root: &Path, out: impl Write) -> io::Result<DiffStats> {
        let after = Snapshot::scan(root)?;
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        let mut stats = DiffStats::default();

        for path in self.entries.keys() {
            if after.entries.contains_key(path) {
                continue;
            }
            // Only the topmost removed path needs a whiteout.
            let parent = path.parent().unwrap_or(Path::new(""));
            let parent_still_dir = parent.as_os_str().is_empty()
                || (after
                    .entries
                    .get(parent)
                    .is_some_and(|m| m.kind == Kind::Dir)
                    && self
                        .entries
                        .get(parent)
                        .is_some_and(|m| m.kind == Kind::Dir));
            if !parent_still_dir {
                continue;
            }
            write_whiteout(&mut builder, path)?;
            stats.removed += 1;
        }

        let mut written_inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for (path, meta) in &after.entries {
            let changed = match self.entries.get(path) {
                None => true,
                Some(before) => differs(before, meta),
            };
            if !changed || meta.kind == Kind::Socket {
                continue;
            }
            let abs = root.join(path);
            write_entry(&mut builder, &abs, path, meta, &mut written_inodes)?;
            stats.changed += 1;
        }

        builder.into_inner()?.flush()?;
        Ok(stats)
    }
}

fn scan_dir(root: &Path, rel: &Path, entries: &mut BTreeMap<PathBuf, Meta>) -> io::Result<()> {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).map_err(|e| with_path(e, &dir))? {
        let entry = entry.map_err(|e| with_path(e, &dir))?;
        let child_rel = rel.join(entry.file_name());
        let abs = root.join(&child_rel);
        let meta = fs::symlink_metadata(&abs).map_err(|e| with_path(e, &abs))?;
        let kind = kind_of(&meta.file_type());
        let link = match kind {
            Kind::Symlink => Some(fs::read_link(&abs).map_err(|e| with_path(e, &abs))?),
            _ => None,
        };

        entries.insert(
            child_rel.clone(),
            Meta {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: if kind == Kind::File { meta.size() } else { 0 },
                mtime: (meta.mtime(), meta.mtime_nsec()),
                rdev: meta.rdev(),
                link,
                dev: meta.dev(),
                ino: meta.ino(),
                nlink: meta.nlink(),
            },
        );
        if kind == Kind::Dir {
            scan_dir(root, &child_rel, entries)?;
        }
    }
    Ok(())
}

fn kind_of(file_type: &fs::FileType) -> Kind {
    if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else if file_type.is_char_device() {
        Kind::Char
    } else if file_type.is_block_device() {
        Kind::Block
    } else if file_type.is_fifo() {
        Kind::Fifo
    } else if file_type.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    }
}

// Limitation: a rewrite that keeps a file's size and mtime is not seen (Docker's naive diff rule).
fn differs(before: &Meta, after: &Meta) -> bool {
    before.kind != after.kind
        || before.mode != after.mode
        || before.uid != after.uid
        || before.gid != after.gid
        || before.size != after.size
        || before.mtime != after.mtime
        || before.rdev != after.rdev
        || before.link != after.link
}

fn write_whiteout<W: Write>(builder: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let whiteout = path
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{WHITEOUT_PREFIX}{name}"));
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_size(0);
    header.set_mode(0);
    header.set_mtime(0);
    builder.append_data(&mut header, &whiteout, io::empty())
}

fn write_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    abs: &Path,
    rel: &Path,
    meta: &Meta,
    written_inodes: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let stat = fs::symlink_metadata(abs).map_err(|e| with_path(e, abs))?;
    let mut header = Header::new_gnu();
    header.set_metadata_in_mode(&stat, HeaderMode::Complete);
    if meta.mtime.1 != 0 {
        // The header holds whole seconds; a replay must restore the rest.
        let value = format!("{}.{:09}", meta.mtime.0, meta.mtime.1);
        builder.append_pax_extensions([("mtime", value.as_bytes())])?;
    }

    if meta.kind != Kind::Dir && meta.nlink > 1 {
        let inode = (meta.dev, meta.ino);
        if let Some(first) = written_inodes.get(&inode) {
            header.set_entry_type(EntryType::Link);
            header.set_size(0);
            return builder.append_link(&mut header, rel, first);
        }
        written_inodes.insert(inode, rel.to_path_buf());
    }

    match meta.kind {
        Kind::Dir => {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, rel, io::empty())
        }
        Kind::File => {
            let file = fs::File::open(abs).map_err(|e| with_path(e, abs))?;
            header.set_size(file.metadata()?.len());
            builder.append_data(&mut header, rel, file)
        }
        Kind::Symlink => {
            let target = meta.link.clone().unwrap_or_default();
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, rel, target)
        }
        Kind::Char | Kind::Block | Kind::Fifo => {
            header.set_size(0);
            builder.append_data(&mut header, rel, io::empty())
        }
        Kind::Socket => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fsutil::copy_tree;
    use crate::layer::{apply_layer, ApplyOptions};
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// Lists a tree as `path kind mode uid content-or-target` lines.
    fn describe(root: &Path) -> Vec<String> {
        let snapshot = Snapshot::scan(root).unwrap();
        snapshot
            .entries
            .iter()
            .map(|(p, m)| {
                let content = match m.kind {
                    Kind::File => fs::read_to_string(root.join(p)).unwrap(),
                    Kind::Symlink => m.link.as_ref().unwrap().display().to_string(),
                    _ => String::new(),
                };
                format!(
                    "{} {:?} {:o} {} {content}",
                    p.display(),
                    m.kind,
                    m.mode,
                    m.uid
                )
            })
            .collect()
    }

    #[test]
    fn applying_a_diff_to_the_old_tree_gives_the_new_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc/conf.d")).unwrap();
        fs::create_dir_all(root.join("var/cache/deep")).unwrap();
        fs::write(root.join("etc/keep"), "same").unwrap();
        fs::write(root.join("etc/edit"), "old").unwrap();
        fs::write(root.join("etc/gone"), "bye").unwrap();
        fs::write(root.join("var/cache/deep/file"), "x").unwrap();
        fs::write(root.join("etc/chmod"), "m").unwrap();
        let before_copy = dir.path().join("before");
        copy_tree(&root, &before_copy).unwrap();

        let snapshot = Snapshot::scan(&root).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(root.join("etc/edit"), "new content").unwrap();
        fs::remove_file(root.join("etc/gone")).unwrap();
        fs::remove_dir_all(root.join("var/cache")).unwrap();
        fs::set_permissions(root.join("etc/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(root.join("opt")).unwrap();
        fs::write(root.join("opt/a"), "a").unwrap();
        fs::hard_link(root.join("opt/a"), root.join("opt/b")).unwrap();
        symlink("../etc/keep", root.join("opt/link")).unwrap();

        let mut layer = Vec::new();
        let stats = snapshot.write_diff(&root, &mut layer).unwrap();
        assert_eq!(
            stats.removed, 2,
            "etc/gone and var/cache; not var/cache/deep"
        );

        apply_layer(&before_copy, layer.as_slice(), ApplyOptions::default()).unwrap();
        assert_eq!(describe(&before_copy), describe(&root));
        let a = fs::metadata(before_copy.join("opt/a")).unwrap().ino();
        assert_eq!(a, fs::metadata(before_copy.join("opt/b")).unwrap().ino());
    }

    #[test]
    fn an_untouched_tree_gives_an_empty_diff() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "x").unwrap();
        let snapshot = Snapshot::scan(dir.path()).unwrap();
        let mut layer = Vec::new();
        let stats = snapshot.write_diff(dir.path(), &mut layer).unwrap();
        assert!(stats.is_empty());
    }
}
