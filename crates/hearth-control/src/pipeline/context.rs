//! The built-in pipeline's file work: unpacking the code artifact, laying
//! out the busybox root, and COPY from the build context into it.
//!
//! Both trees are untrusted input, so no path is followed out of its tree:
//! zip entries must stay inside the context, COPY sources may not pass
//! through a symlink of the context, and COPY destinations may not pass
//! through a symlink of the image (whose absolute targets would point into
//! the host). Symlinks themselves are copied as links.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The most bytes an artifact may unpack to.
const MAX_UNPACKED_BYTES: u64 = 4 << 30;

/// Unpacks the zip at `zip` into `dest`.
///
/// # Errors
///
/// A message naming the entry that could not be unpacked.
pub fn unzip(zip: &Path, dest: &Path) -> Result<(), String> {
    let file = fs::File::open(zip).map_err(|e| format!("cannot open the artifact: {e}"))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("the artifact is not a zip file: {e}"))?;
    let mut total = 0u64;

    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| format!("zip entry {index} is unreadable: {e}"))?;
        let name = entry.name().to_owned();
        let Some(relative) = entry.enclosed_name() else {
            return Err(format!("zip entry {name:?} points outside the archive"));
        };
        let path = dest.join(relative);
        let io_err = |e: io::Error| format!("cannot unpack zip entry {name:?}: {e}");

        if entry.is_dir() {
            fs::create_dir_all(&path).map_err(io_err)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            io::Read::read_to_string(&mut entry, &mut target).map_err(io_err)?;
            symlink(target, &path).map_err(io_err)?;
            continue;
        }

        total += entry.size();
        if total > MAX_UNPACKED_BYTES {
            return Err(format!(
                "the artifact unpacks to more than {MAX_UNPACKED_BYTES} bytes"
            ));
        }
        let mode = entry.unix_mode().map_or(0o644, |m| m & 0o7777);
        let mut out = fs::File::create(&path).map_err(io_err)?;
        io::copy(&mut entry, &mut out).map_err(io_err)?;
        out.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err)?;
    }
    Ok(())
}

/// Lays out a busybox root filesystem at `root`: the static binary, a link
/// for each applet in `bin/` or `sbin/`, the users root and nobody, and the
/// usual empty directories (as `guest/make-busybox-rootfs.sh` does).
///
/// # Errors
///
/// A message saying what could not be made.
pub fn busybox_rootfs(busybox: &Path, root: &Path) -> Result<(), String> {
    let bytes = fs::read(busybox).map_err(|e| {
        format!(
            "no busybox at {} ({e}); install busybox-static",
            busybox.display()
        )
    })?;
    // A dynamically linked busybox would need a libc in the image.
    if has_interpreter(&bytes) {
        return Err(format!(
            "{} is dynamically linked; install busybox-static",
            busybox.display()
        ));
    }
    let err = |what: &str, e: io::Error| format!("cannot lay out the busybox root ({what}): {e}");

    for dir in [
        "bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run",
    ] {
        fs::create_dir_all(root.join(dir)).map_err(|e| err(dir, e))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))
        .map_err(|e| err("tmp", e))?;
    fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700))
        .map_err(|e| err("root", e))?;
    fs::write(root.join("bin/busybox"), &bytes).map_err(|e| err("bin/busybox", e))?;
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))
        .map_err(|e| err("bin/busybox", e))?;

    let listing = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| err("busybox --list-full", e))?;
    for applet in String::from_utf8_lossy(&listing.stdout).lines() {
        let name = applet.rsplit('/').next().unwrap_or(applet);
        if name.is_empty() || name == "busybox" {
            continue;
        }
        let dir = if applet.starts_with("sbin/") || applet.starts_with("usr/sbin/") {
            "sbin"
        } else {
            "bin"
        };
        let link = root.join(dir).join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink("/bin/busybox", &link).map_err(|e| err(name, e))?;
        }
    }

    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        (
            "etc/shadow",
            "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
            0o640,
        ),
        ("etc/hostname", "hearth\n", 0o644),
    ];
    for (path, text, mode) in files {
        fs::write(root.join(path), text).map_err(|e| err(path, e))?;
        fs::set_permissions(root.join(path), fs::Permissions::from_mode(mode))
            .map_err(|e| err(path, e))?;
    }
    Ok(())
}

/// Whether a 64-bit little-endian ELF file names a program interpreter
/// (`PT_INTERP`), as dynamically linked programs do.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, len: usize| elf.get(at..at + len);
    let le64 = |at| {
        read(at, 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let le32 = |at| {
        read(at, 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let le16 = |at| {
        read(at, 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    if read(0, 6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (le64(0x20), le16(0x36), le16(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count)).any(|i| le32(phoff + i * usize::from(size)) == Some(PT_INTERP))
}

/// `COPY sources dest` from `context` into the image at `root`, with the
/// working directory `workdir`; returns the bytes copied.
///
/// # Errors
///
/// A message naming the source or destination that could not be copied.
pub fn copy(
    context: &Path,
    root: &Path,
    sources: &[String],
    dest: &str,
    workdir: &str,
) -> Result<u64, String> {
    let dest_guest = guest_path(workdir, dest);
    let mut resolved = Vec::new();
    for source in sources {
        let path = context_path(context, source)?;
        let meta = fs::symlink_metadata(&path)
            .map_err(|_| format!("COPY source {source:?} is not in the build context"))?;
        resolved.push((source, path, meta));
    }

    let into_dir = sources.len() > 1 || dest.ends_with('/') || resolved[0].2.is_dir();
    let mut bytes = 0;
    for (source, path, meta) in resolved {
        let target = match (into_dir, meta.is_dir()) {
            (_, true) => dest_guest.clone(),
            (true, false) => dest_guest.join(path.file_name().unwrap_or_default()),
            (false, false) => dest_guest.clone(),
        };
        let host_target = image_path(root, &target)?;
        bytes += copy_tree(&path, &host_target)
            .map_err(|e| format!("COPY {source:?} to {}: {e}", target.display()))?;
    }
    Ok(bytes)
}

/// Makes a directory of the image (`WORKDIR`), refusing symlinked parents.
///
/// # Errors
///
/// A message naming the directory.
pub fn make_image_dir(root: &Path, guest_dir: &str) -> Result<(), String> {
    let host = image_path(root, Path::new(guest_dir))?;
    fs::create_dir_all(&host).map_err(|e| format!("cannot make {guest_dir}: {e}"))
}

/// `dest` resolved against `workdir`, normalized, absolute.
pub fn guest_path(workdir: &str, dest: &str) -> PathBuf {
    let joined = if dest.starts_with('/') {
        PathBuf::from(dest)
    } else {
        Path::new(workdir).join(dest)
    };
    let mut out = PathBuf::from("/");
    for part in joined.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A source of the build context, refusing paths that leave it or pass
/// through a symlink.
fn context_path(context: &Path, source: &str) -> Result<PathBuf, String> {
    let mut path = context.to_owned();
    let parts: Vec<_> = Path::new(source).components().collect();
    for (index, part) in parts.iter().enumerate() {
        match part {
            Component::Normal(name) => path.push(name),
            Component::ParentDir => {
                return Err(format!("COPY source {source:?} leaves the build context"))
            }
            _ => continue,
        }
        let last = index + 1 == parts.len();
        let is_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && !last {
            return Err(format!("COPY source {source:?} passes through a symlink"));
        }
    }
    Ok(path)
}

/// The host path of an absolute image path, with its parents made and
/// none of them a symlink.
fn image_path(root: &Path, guest: &Path) -> Result<PathBuf, String> {
    let names: Vec<_> = guest
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut path = root.to_owned();
    for (index, name) in names.iter().enumerate() {
        path.push(name);
        if index + 1 == names.len() {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!("{} is a symlink in the image", guest.display()))
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(format!(
                    "a parent of {} is not a directory",
                    guest.display()
                ))
            }
            Ok(_) => {}
            Err(_) => fs::create_dir(&path).map_err(|e| format!("cannot make a parent: {e}"))?,
        }
    }
    Ok(path)
}

/// Copies a file, link or directory tree (its contents, for a directory)
/// to `target`, replacing what is there; returns the bytes copied.
fn copy_tree(source: &Path, target: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(source)?;
    if meta.is_dir() {
        match fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(target)?;
                fs::create_dir(target)?;
            }
            Err(_) => fs::create_dir(target)?,
        }
        let mut bytes = 0;
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            bytes += copy_tree(&entry.path(), &target.join(entry.file_name()))?;
        }
        return Ok(bytes);
    }

    if let Ok(existing) = fs::symlink_metadata(target) {
        if existing.is_dir() {
            fs::remove_dir_all(target)?;
        } else {
            fs::remove_file(target)?;
        }
    }
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(source)?, target)?;
        return Ok(0);
    }
    fs::copy(source, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_follows_docker_rules_and_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let (context, root) = (dir.path().join("ctx"), dir.path().join("root"));
        fs::create_dir_all(context.join("www")).unwrap();
        fs::create_dir_all(&root).unwrap();
        fs::write(context.join("a.sh"), "echo a").unwrap();
        fs::write(context.join("www/index.html"), "hi").unwrap();

        copy(&context, &root, &["a.sh".into()], "./", "/app").unwrap();
        copy(&context, &root, &["www".into()], "/srv", "/").unwrap();
        copy(&context, &root, &["a.sh".into()], "b.sh", "/app").unwrap();
        assert_eq!(fs::read_to_string(root.join("app/a.sh")).unwrap(), "echo a");
        assert_eq!(
            fs::read_to_string(root.join("srv/index.html")).unwrap(),
            "hi"
        );
        assert!(root.join("app/b.sh").is_file());

        let error = copy(&context, &root, &["../x".into()], "/", "/").unwrap_err();
        assert!(error.contains("leaves the build context"), "{error}");

        // A link in the image may not carry a copy out of it.
        symlink("/etc", root.join("escape")).unwrap();
        let error = copy(&context, &root, &["a.sh".into()], "/escape/x", "/").unwrap_err();
        assert!(error.contains("symlink"), "{error}");
    }

    #[test]
    fn static_programs_have_no_interpreter() {
        // This test's own binary is dynamically linked.
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&exe));
        assert!(!has_interpreter(b"#!/bin/sh"));
    }

    #[test]
    fn guest_paths_are_normalized() {
        assert_eq!(guest_path("/app", "./x"), PathBuf::from("/app/x"));
        assert_eq!(guest_path("/app", "../../x"), PathBuf::from("/x"));
        assert_eq!(guest_path("/app", "/y/"), PathBuf::from("/y"));
    }
}
