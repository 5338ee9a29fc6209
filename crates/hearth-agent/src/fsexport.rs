//! `FsMark` and `FsExport`: the root filesystem, or what changed in it since
//! a mark, as a tar stream on channel 0.
//!
//! A build step runs in a VM booted on the step's root filesystem; the host
//! marks the tree before the step's command and exports what changed after
//! it, then applies that layer to its own copy. So only the change crosses
//! the channel, and untouched files keep their exact metadata on the host.
//!
//! A [`Tree`] is the metadata of every path under the root that lies on the
//! root's own filesystem: mounts inside it (`/proc`, `/sys`, `/dev`, a tmpfs
//! `/tmp`, the bind-mounted `/etc/resolv.conf`) are listed as skipped and
//! never entered. Device nodes and sockets are left out: a build's image is
//! device-less, and the host never takes a device node from a guest.
//!
//! A path counts as changed when its type, mode, owner, size, mtime, ctime,
//! inode, link target or link count differ. The ctime catches rewrites that
//! restore a file's size and mtime. Changed and new paths are written as
//! they are now; removed ones as OCI `.wh.` whiteouts (only the topmost
//! removed path). Hard links among the written files stay hard links.
//! Mtimes keep their nanoseconds in a PAX `mtime` record.
//!
//! Limitation: extended attributes (file capabilities, ACLs) are not
//! exported, so a RUN step's `setcap` does not reach the image.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use hearth_protocol::{Control, FsExportSummary, Stream, CHAN_STDIO};
use tar::{EntryType, Header};
use tokio::sync::mpsc;

use crate::agent::{answer, refuse};

/// The prefix of an OCI whiteout.
const WHITEOUT_PREFIX: &str = ".wh.";

/// The size of the chunks the tar is sent in.
const CHUNK: usize = 64 * 1024;

/// One path's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    nlink: u64,
    link: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
}

/// The recorded state of a root filesystem.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    entries: BTreeMap<PathBuf, Meta>,
    skipped: Vec<PathBuf>,
}

impl Tree {
    /// Records every path under `root` on `root`'s filesystem.
    ///
    /// # Errors
    ///
    /// The first failure to read a directory, naming it.
    pub fn scan(root: &Path) -> io::Result<Tree> {
        let dev = fs::metadata(root).map_err(|e| with_path(e, root))?.dev();
        let mut tree = Tree::default();
        tree.scan_dir(root, Path::new(""), dev)?;
        Ok(tree)
    }

    /// How many paths the tree holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn scan_dir(&mut self, root: &Path, rel: &Path, dev: u64) -> io::Result<()> {
        let dir = root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| with_path(e, &dir))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();

        for name in names {
            let child = rel.join(&name);
            let abs = root.join(&child);
            // A path that vanished since the listing was never there.
            let Ok(meta) = fs::symlink_metadata(&abs) else {
                continue;
            };
            if meta.dev() != dev {
                self.skipped.push(child);
                continue;
            }
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                Kind::Dir
            } else if file_type.is_symlink() {
                Kind::Symlink
            } else if file_type.is_fifo() {
                Kind::Fifo
            } else if file_type.is_file() {
                Kind::File
            } else {
                continue;
            };
            let link = match kind {
                Kind::Symlink => fs::read_link(&abs).ok(),
                _ => None,
            };

            self.entries.insert(
                child.clone(),
                Meta {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: if kind == Kind::File { meta.size() } else { 0 },
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    ctime: (meta.ctime(), meta.ctime_nsec()),
                    ino: meta.ino(),
                    nlink: meta.nlink(),
                    link,
                },
            );
            if kind == Kind::Dir {
                self.scan_dir(root, &child, dev)?;
            }
        }
        Ok(())
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("{}: {}", path.display(), crate::io_text(&e)),
    )
}

/// Writes `after` as a tar: everything, or with `before` only what changed
/// since it, with whiteouts for what was removed.
///
/// # Errors
///
/// The first I/O failure, naming the path.
pub fn write_tar(
    root: &Path,
    before: Option<&Tree>,
    after: &Tree,
    out: impl Write,
) -> io::Result<FsExportSummary> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut summary = FsExportSummary {
        skipped: after
            .skipped
            .iter()
            .map(|p| format!("/{}", p.display()))
            .collect(),
        ..FsExportSummary::default()
    };

    if let Some(before) = before {
        for path in before.entries.keys() {
            if after.entries.contains_key(path) || !parent_kept(path, before, after) {
                continue;
            }
            write_whiteout(&mut builder, path)?;
            summary.removed += 1;
        }
    }

    let mut written: HashMap<u64, PathBuf> = HashMap::new();
    for (path, meta) in &after.entries {
        let changed = match before.and_then(|b| b.entries.get(path)) {
            Some(old) => old != meta,
            None => true,
        };
        if !changed {
            continue;
        }
        summary.bytes += write_entry(&mut builder, root, path, meta, &mut written)?;
        summary.entries += 1;
    }

    builder.into_inner()?.flush()?;
    Ok(summary)
}

/// Whether a removed path's directory is a directory before and after, so
/// that its whiteout is the topmost one.
fn parent_kept(path: &Path, before: &Tree, after: &Tree) -> bool {
    let parent = path.parent().unwrap_or(Path::new(""));
    if parent.as_os_str().is_empty() {
        return true;
    }
    let is_dir = |tree: &Tree| {
        tree.entries
            .get(parent)
            .is_some_and(|m| m.kind == Kind::Dir)
    };
    is_dir(before) && is_dir(after)
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

/// Writes one entry; returns the content bytes it carried.
fn write_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    meta: &Meta,
    written: &mut HashMap<u64, PathBuf>,
) -> io::Result<u64> {
    let mut header = Header::new_gnu();
    header.set_mode(meta.mode);
    header.set_uid(meta.uid.into());
    header.set_gid(meta.gid.into());
    header.set_mtime(meta.mtime.0.max(0) as u64);
    header.set_size(0);
    if meta.mtime.1 != 0 {
        let value = format!("{}.{:09}", meta.mtime.0, meta.mtime.1);
        builder.append_pax_extensions([("mtime", value.as_bytes())])?;
    }

    if meta.kind != Kind::Dir && meta.nlink > 1 {
        if let Some(first) = written.get(&meta.ino) {
            header.set_entry_type(EntryType::Link);
            builder.append_link(&mut header, rel, first)?;
            return Ok(0);
        }
        written.insert(meta.ino, rel.to_path_buf());
    }

    match meta.kind {
        Kind::Dir => {
            header.set_entry_type(EntryType::Directory);
            builder.append_data(&mut header, rel, io::empty())?;
            Ok(0)
        }
        Kind::Fifo => {
            header.set_entry_type(EntryType::Fifo);
            builder.append_data(&mut header, rel, io::empty())?;
            Ok(0)
        }
        Kind::Symlink => {
            header.set_entry_type(EntryType::Symlink);
            let target = meta.link.clone().unwrap_or_default();
            builder.append_link(&mut header, rel, target)?;
            Ok(0)
        }
        Kind::File => {
            let abs = root.join(rel);
            let file = fs::File::open(&abs).map_err(|e| with_path(e, &abs))?;
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.size);
            // Exactly the recorded size, even if something still writes to it.
            let body = file.take(meta.size).chain(io::repeat(0)).take(meta.size);
            builder.append_data(&mut header, rel, body)?;
            Ok(meta.size)
        }
    }
}

/// A `Write` that sends full chunks to an async task.
struct ChunkWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the host went away"))
    }
}

/// Serves `FsMark`: scans `root` and returns the tree to keep.
pub async fn mark(root: PathBuf, stream: Stream) -> Option<Tree> {
    let (tx, _rx) = stream.split();
    let scanned = tokio::task::spawn_blocking(move || Tree::scan(&root))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    match scanned {
        Ok(tree) => {
            let value = serde_json::json!({ "entries": tree.len() });
            answer(&tx, Control::Ok { value });
            Some(tree)
        }
        Err(err) => {
            refuse(
                &tx,
                &format!("scan the root filesystem: {}", crate::describe(&err)),
            );
            None
        }
    }
}

/// Serves `FsExport`: the tar of `root` (or its changes since `before`) on
/// channel 0, then `Eof` and the summary.
pub async fn export(root: PathBuf, before: Option<Tree>, stream: Stream) {
    let (tx, _rx) = stream.split();
    let (chunks_tx, mut chunks) = mpsc::channel::<Vec<u8>>(4);

    let writer = tokio::task::spawn_blocking(move || {
        let after = Tree::scan(&root)?;
        let mut out = ChunkWriter {
            tx: chunks_tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let summary = write_tar(&root, before.as_ref(), &after, &mut out)?;
        out.flush()?;
        Ok::<_, io::Error>(summary)
    });

    while let Some(chunk) = chunks.recv().await {
        if tx.data(CHAN_STDIO, &chunk).await.is_err() {
            // The host closed the stream: the writer fails on its next chunk.
            drop(chunks);
            let _ = writer.await;
            return;
        }
    }

    match writer.await {
        Ok(Ok(summary)) => {
            let _ = tx.eof(CHAN_STDIO);
            let value = serde_json::to_value(summary).unwrap_or_default();
            answer(&tx, Control::Ok { value });
        }
        Ok(Err(err)) => refuse(&tx, &format!("export: {}", crate::describe(&err))),
        Err(err) => refuse(&tx, &format!("export: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// The entries of a tar as `path type [size|target]` lines.
    fn list(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let kind = entry.header().entry_type();
            let detail = match kind {
                EntryType::Symlink | EntryType::Link => entry
                    .link_name()
                    .expect("link")
                    .map(|l| l.display().to_string())
                    .unwrap_or_default(),
                _ => entry.header().size().expect("size").to_string(),
            };
            let mtime = entry
                .pax_extensions()
                .expect("pax")
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .any(|e| e.key() == Ok("mtime"));
            out.push(format!("{path} {kind:?} {detail} pax={mtime}"));
        }
        out
    }

    #[test]
    fn changes_since_a_mark_are_a_layer_with_whiteouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("etc/conf.d")).expect("mkdir");
        fs::create_dir_all(root.join("var/cache/deep")).expect("mkdir");
        fs::write(root.join("etc/keep"), "same").expect("write");
        fs::write(root.join("etc/edit"), "old").expect("write");
        fs::write(root.join("var/cache/deep/f"), "x").expect("write");
        let before = Tree::scan(root).expect("scan");

        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(root.join("etc/edit"), "new").expect("write");
        fs::remove_dir_all(root.join("var/cache")).expect("rm");
        fs::create_dir(root.join("opt")).expect("mkdir");
        fs::write(root.join("opt/a"), "aaaa").expect("write");
        fs::hard_link(root.join("opt/a"), root.join("opt/b")).expect("link");
        symlink("../etc/keep", root.join("opt/s")).expect("symlink");
        let after = Tree::scan(root).expect("scan");

        let mut tar = Vec::new();
        let summary = write_tar(root, Some(&before), &after, &mut tar).expect("tar");
        assert_eq!(summary.removed, 1, "only var/cache, not what was under it");
        assert_eq!(summary.bytes, 3 + 4);
        let listed = list(&tar);
        assert_eq!(listed[0], "var/.wh.cache Regular 0 pax=false");
        let rest: Vec<&str> = listed[1..]
            .iter()
            .map(|l| l.split(" pax=").next().unwrap_or(""))
            .collect();
        assert_eq!(
            rest,
            vec![
                "etc/edit Regular 3",
                "opt Directory 0",
                "opt/a Regular 4",
                "opt/b Link opt/a",
                "opt/s Symlink ../etc/keep",
                "var Directory 0",
            ]
        );
        assert!(listed[1].ends_with("pax=true"), "nanoseconds travel in PAX");
    }

    #[test]
    fn an_untouched_tree_exports_nothing_and_a_full_export_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("d")).expect("mkdir");
        fs::write(dir.path().join("d/f"), "x").expect("write");
        let tree = Tree::scan(dir.path()).expect("scan");

        let mut tar = Vec::new();
        let summary = write_tar(dir.path(), Some(&tree), &tree, &mut tar).expect("tar");
        assert_eq!((summary.entries, summary.removed), (0, 0));

        let mut tar = Vec::new();
        let summary = write_tar(dir.path(), None, &tree, &mut tar).expect("tar");
        assert_eq!((summary.entries, summary.bytes), (2, 1));
    }
}
