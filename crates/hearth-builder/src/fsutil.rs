//! File-system helpers shared by the layer applier, COPY and the stores.
//!
//! The one rule they keep: a path inside a root file system is resolved the
//! way the guest would resolve it, with the root as `/`. A symlink in the
//! tree (`/var/run -> /run`, `lib -> usr/lib`, or a hostile `x -> /etc`)
//! is followed inside the root and can never lead out of it.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;

/// How many symlinks one lookup may follow (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// Cleans a path that is relative to some root: drops `/`, `.` and empty
/// components. `None` when a `..` component would climb above the root.
pub(crate) fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Resolves `rel` inside `root`, following symlinks as if `root` were `/`.
/// The last component is not followed when `follow_last` is false, so that
/// the caller can replace or inspect a symlink itself. Missing components
/// are kept as they are.
///
/// # Errors
///
/// An error for a symlink loop, or a component that is not a directory.
pub(crate) fn resolve_in_root(root: &Path, rel: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(rel);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut followed = 0;

    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&part);
        let is_last = pending.is_empty();

        let meta = match fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                resolved.push(part);
                continue;
            }
            Err(e) => return Err(e),
        };

        if meta.file_type().is_symlink() && (follow_last || !is_last) {
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(io::Error::other(format!(
                    "too many levels of symlinks at {}",
                    candidate.display()
                )));
            }
            let target = fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved.clear();
            }
            let mut next = components(&target);
            next.extend(pending);
            pending = next;
            continue;
        }

        if !is_last && !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", candidate.display()),
            ));
        }
        resolved.push(part);
    }
    Ok(join(root, &resolved))
}

/// Resolves `rel` inside `root` like [`resolve_in_root`] (following every
/// component) and creates the directories that are missing, with mode 0755
/// and owned by whoever runs this.
///
/// # Errors
///
/// As [`resolve_in_root`], or a failure to create a directory.
pub(crate) fn mkdir_in_root(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut done = PathBuf::new();
    for part in components(rel) {
        done.push(part);
        let path = resolve_in_root(root, &done, true)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A symlink may point at a path whose parents are missing
                // too; they resolved to plain components, so this stays inside.
                fs::create_dir_all(&path)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e),
        }
    }
    resolve_in_root(root, rel, true)
}

/// Removes whatever is at `path` (file, symlink or directory tree); a
/// missing path is not an error.
///
/// # Errors
///
/// A failure to remove.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies a directory tree, keeping file types, modes, owners, mtimes,
/// symlinks (not followed), hard links (within the tree) and device nodes.
/// `dst` must not exist.
///
/// # Errors
///
/// The first I/O failure, naming the path.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    let chown = nix::unistd::geteuid().is_root();

    copy_entry(src, dst, chown, &mut links, &mut dirs)?;

    // Directory mtimes last, since filling a directory changes its mtime.
    for (path, meta) in dirs.iter().rev() {
        let mtime = FileTime::from_last_modification_time(meta);
        filetime::set_file_mtime(path, mtime).map_err(|e| with_path(e, path))?;
    }
    Ok(())
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    chown: bool,
    links: &mut HashMap<(u64, u64), PathBuf>,
    dirs: &mut Vec<(PathBuf, fs::Metadata)>,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(src).map_err(|e| with_path(e, src))?;
    let kind = meta.file_type();

    if kind.is_dir() {
        fs::create_dir(dst).map_err(|e| with_path(e, dst))?;
        let mut entries: Vec<_> = fs::read_dir(src)
            .map_err(|e| with_path(e, src))?
            .collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            copy_entry(
                &entry.path(),
                &dst.join(entry.file_name()),
                chown,
                links,
                dirs,
            )?;
        }
        set_owner_and_mode(dst, &meta, chown)?;
        dirs.push((dst.to_path_buf(), meta));
        return Ok(());
    }

    if meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return fs::hard_link(first, dst).map_err(|e| with_path(e, dst));
        }
        links.insert((meta.dev(), meta.ino()), dst.to_path_buf());
    }

    if kind.is_symlink() {
        let target = fs::read_link(src).map_err(|e| with_path(e, src))?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| with_path(e, dst))?;
        if chown {
            std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| with_path(e, dst))?;
        }
        let mtime = FileTime::from_last_modification_time(&meta);
        filetime::set_symlink_file_times(dst, mtime, mtime).map_err(|e| with_path(e, dst))?;
        return Ok(());
    }

    if kind.is_file() {
        fs::copy(src, dst).map_err(|e| with_path(e, dst))?;
    } else {
        make_node(dst, &meta)?;
    }
    set_owner_and_mode(dst, &meta, chown)?;
    // Never open the copy to set its time: opening a device node or a FIFO
    // has effects of its own (or blocks).
    let mtime = FileTime::from_last_modification_time(&meta);
    filetime::set_symlink_file_times(dst, mtime, mtime).map_err(|e| with_path(e, dst))
}

/// Creates a device node, FIFO or socket like the one `meta` describes.
pub(crate) fn make_node(dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let kind = SFlag::from_bits_truncate(meta.mode() & SFlag::S_IFMT.bits());
    let mode = Mode::from_bits_truncate(meta.mode() & 0o7777);
    mknod(dst, kind, mode, meta.rdev()).map_err(|e| with_path(io::Error::from(e), dst))
}

/// Sets owner (when running as root) and then the mode, in that order so
/// that set-id bits survive the chown.
fn set_owner_and_mode(dst: &Path, meta: &fs::Metadata, chown: bool) -> io::Result<()> {
    if chown {
        std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| with_path(e, dst))?;
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| with_path(e, dst))
}

/// Adds the path to an I/O error's message.
pub(crate) fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_relative_rejects_climbing_out() {
        assert_eq!(
            clean_relative(Path::new("/a/./b/")).unwrap(),
            Path::new("a/b")
        );
        assert_eq!(clean_relative(Path::new("a/../b")).unwrap(), Path::new("b"));
        assert!(clean_relative(Path::new("../x")).is_none());
        assert!(clean_relative(Path::new("a/../../x")).is_none());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("run")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/run", root.join("var/run")).unwrap();
        symlink("/etc", root.join("evil")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();

        let r = |p: &str| resolve_in_root(root, Path::new(p), true).unwrap();
        assert_eq!(r("lib/x.so"), root.join("usr/lib/x.so"));
        assert_eq!(r("var/run/pid"), root.join("run/pid"));
        assert_eq!(r("evil/passwd"), root.join("etc/passwd"));
        assert_eq!(r("up/etc/shadow"), root.join("etc/shadow"));
        assert_eq!(
            resolve_in_root(root, Path::new("lib"), false).unwrap(),
            root.join("lib")
        );
    }

    #[test]
    fn symlink_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(resolve_in_root(dir.path(), Path::new("a/x"), true).is_err());
    }

    #[test]
    fn mkdir_in_root_follows_links_and_creates_missing_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        symlink("/real", root.join("app")).unwrap();
        let made = mkdir_in_root(root, Path::new("app/sub")).unwrap();
        assert_eq!(made, root.join("real/sub"));
        assert!(root.join("real/sub").is_dir());
    }

    #[test]
    fn copy_tree_copies_fifos_without_opening_them() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        nix::unistd::mkfifo(
            &src.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let meta = fs::symlink_metadata(dst.join("pipe")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
        assert_eq!(meta.mode() & 0o7777, 0o640);
    }

    #[test]
    fn copy_tree_keeps_links_modes_and_hardlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), "data").unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
        symlink("d/f", src.join("s")).unwrap();

        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let f = fs::metadata(dst.join("d/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o4751);
        assert_eq!(f.ino(), fs::metadata(dst.join("h")).unwrap().ino());
        assert_eq!(fs::read_link(dst.join("s")).unwrap(), Path::new("d/f"));
        assert_eq!(fs::read_to_string(dst.join("h")).unwrap(), "data");
    }
}
