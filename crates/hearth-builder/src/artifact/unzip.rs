//! Unpacking a zip artifact without trusting it.
//!
//! Entries are checked before anything is written: no absolute paths, no
//! `..`, no symlink whose target is absolute or climbs out, no entry under
//! a symlink an earlier entry made, no duplicates. The entry count is
//! checked against the limit before extraction starts, and the bytes
//! actually written (not what the headers claim) against the size limit as
//! they are written, so a zip bomb stops at the limit.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::{commit, staging_dir, ArtifactError, ArtifactSummary, ExtractLimits, MAX_LINK_TARGET};

/// Unpacks a zip into `dest` (which must not exist) under `limits`, and
/// checks that it has a `Dockerfile` at its root.
///
/// # Errors
///
/// [`ArtifactError`] naming the offending entry; nothing is left at `dest`
/// on failure.
pub fn extract_zip(
    zip_path: &Path,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ArtifactSummary, ArtifactError> {
    let file = fs::File::open(zip_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ArtifactError::NotFound {
            path: zip_path.to_path_buf(),
        },
        _ => ArtifactError::Io {
            path: zip_path.to_path_buf(),
            source: e,
        },
    })?;
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|source| ArtifactError::NotZip {
            path: zip_path.to_path_buf(),
            source,
        })?;

    let count = archive.len() as u64;
    if count > limits.max_entries {
        return Err(ArtifactError::TooManyEntries {
            count,
            limit: limits.max_entries,
        });
    }

    let staging = staging_dir(dest)?;
    let mut unpacker = Unpacker {
        root: staging.path(),
        limits,
        summary: ArtifactSummary::default(),
        dirs: Vec::new(),
    };
    for index in 0..archive.len() {
        let name = archive.name_for_index(index).unwrap_or("?").to_owned();
        let entry = archive
            .by_index(index)
            .map_err(|e| zip_entry_error(name, e))?;
        unpacker.entry(entry)?;
    }
    unpacker.finish()?;

    let summary = unpacker.summary;
    commit(staging, dest)?;
    Ok(summary)
}

fn zip_entry_error(entry: String, error: zip::result::ZipError) -> ArtifactError {
    match error {
        zip::result::ZipError::UnsupportedArchive(zip::result::ZipError::PASSWORD_REQUIRED) => {
            ArtifactError::Encrypted { entry }
        }
        other => ArtifactError::Entry {
            entry,
            source: io::Error::other(other),
        },
    }
}

struct Unpacker<'a> {
    root: &'a Path,
    limits: &'a ExtractLimits,
    summary: ArtifactSummary,
    /// Directories and their final modes, applied at the end so that a
    /// read-only directory can still be filled.
    dirs: Vec<(PathBuf, u32)>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(
        &mut self,
        mut entry: zip::read::ZipFile<'_, R>,
    ) -> Result<(), ArtifactError> {
        let name = entry.name().to_owned();
        if entry.encrypted() {
            return Err(ArtifactError::Encrypted { entry: name });
        }
        let rel = entry_path(&name)?;
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        let fail = |source: io::Error| ArtifactError::Entry {
            entry: name.clone(),
            source,
        };

        let parent = self.parent_dirs(&name, &rel)?;
        let dst = parent.join(rel.file_name().unwrap_or_default());
        let mode = entry.unix_mode().unwrap_or(0);
        self.summary.entries += 1;

        if entry.is_dir() {
            match fs::symlink_metadata(&dst) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(ArtifactError::Duplicate { entry: name }),
                Err(_) => fs::create_dir(&dst).map_err(fail)?,
            }
            let perms = if mode & 0o777 == 0 {
                0o755
            } else {
                mode & 0o777
            };
            self.dirs.push((dst, perms));
            return Ok(());
        }

        if entry.is_symlink() {
            let mut target = String::new();
            (&mut entry)
                .take(MAX_LINK_TARGET)
                .read_to_string(&mut target)
                .map_err(fail)?;
            check_link_target(&name, &rel, &target)?;
            return std::os::unix::fs::symlink(&target, &dst).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => ArtifactError::Duplicate {
                    entry: name.clone(),
                },
                _ => fail(e),
            });
        }

        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dst)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => ArtifactError::Duplicate {
                    entry: name.clone(),
                },
                _ => fail(e),
            })?;

        // Count what is written, one byte past the budget to detect overflow.
        let budget = self.limits.max_bytes - self.summary.bytes;
        let written =
            io::copy(&mut (&mut entry).take(budget.saturating_add(1)), &mut out).map_err(fail)?;
        if written > budget {
            return Err(ArtifactError::TooLarge {
                entry: name,
                limit: self.limits.max_bytes,
            });
        }
        self.summary.bytes += written;

        let perms = if mode & 0o777 == 0 {
            0o644
        } else {
            mode & 0o777
        };
        fs::set_permissions(&dst, fs::Permissions::from_mode(perms)).map_err(fail)
    }

    /// Creates the entry's parent directories, refusing to pass through a
    /// symlink that an earlier entry made.
    fn parent_dirs(&self, name: &str, rel: &Path) -> Result<PathBuf, ArtifactError> {
        let mut dir = self.root.to_path_buf();
        let Some(parent) = rel.parent() else {
            return Ok(dir);
        };
        for part in parent.components() {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(ArtifactError::ThroughSymlink {
                        entry: name.to_owned(),
                        link: dir
                            .strip_prefix(self.root)
                            .unwrap_or(&dir)
                            .display()
                            .to_string(),
                    })
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(ArtifactError::Duplicate {
                        entry: name.to_owned(),
                    })
                }
                Err(_) => fs::create_dir(&dir).map_err(|source| ArtifactError::Entry {
                    entry: name.to_owned(),
                    source,
                })?,
            }
        }
        Ok(dir)
    }

    fn finish(&mut self) -> Result<(), ArtifactError> {
        for (dir, mode) in self.dirs.iter().rev() {
            fs::set_permissions(dir, fs::Permissions::from_mode(*mode | 0o700)).map_err(
                |source| ArtifactError::Io {
                    path: dir.clone(),
                    source,
                },
            )?;
        }
        Ok(())
    }
}

/// Validates a zip entry's name and turns it into a relative path.
fn entry_path(name: &str) -> Result<PathBuf, ArtifactError> {
    // Some zip tools write Windows separators.
    let unified = name.replace('\\', "/");
    let drive = unified.len() >= 2 && unified.as_bytes()[1] == b':';
    if unified.starts_with('/') || drive || unified.contains('\0') {
        return Err(ArtifactError::AbsolutePath {
            entry: name.to_owned(),
        });
    }

    let mut rel = PathBuf::new();
    for component in Path::new(&unified).components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ArtifactError::ParentDir {
                    entry: name.to_owned(),
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArtifactError::AbsolutePath {
                    entry: name.to_owned(),
                })
            }
        }
    }
    Ok(rel)
}

/// A symlink's target must be relative and stay inside the artifact, seen
/// from the link's own directory.
fn check_link_target(name: &str, rel: &Path, target: &str) -> Result<(), ArtifactError> {
    let escape = || ArtifactError::SymlinkEscape {
        entry: name.to_owned(),
        target: target.to_owned(),
    };
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return Err(escape());
    }

    // `..` may only lead: after a name it could climb back through another
    // symlink, which a lexical check cannot follow.
    let mut depth: usize = rel.parent().map(|p| p.components().count()).unwrap_or(0);
    let mut descended = false;
    for component in Path::new(target).components() {
        match component {
            Component::Normal(_) => descended = true,
            Component::CurDir => {}
            Component::ParentDir if !descended => {
                depth = depth.checked_sub(1).ok_or_else(escape)?;
            }
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escape())
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_validated() {
        assert_eq!(entry_path("./a/b.txt").unwrap(), Path::new("a/b.txt"));
        assert!(matches!(
            entry_path("/etc/passwd"),
            Err(ArtifactError::AbsolutePath { .. })
        ));
        assert!(matches!(
            entry_path("C:/x"),
            Err(ArtifactError::AbsolutePath { .. })
        ));
        assert!(matches!(
            entry_path("a/../../x"),
            Err(ArtifactError::ParentDir { .. })
        ));
        assert!(matches!(
            entry_path("..\\x"),
            Err(ArtifactError::ParentDir { .. })
        ));
    }

    #[test]
    fn link_targets_must_stay_inside() {
        let ok = |rel: &str, target: &str| check_link_target(rel, Path::new(rel), target).is_ok();
        assert!(ok("a/b/link", "../../x"));
        assert!(ok("link", "sub/file"));
        assert!(!ok("link", "../x"));
        assert!(!ok("a/link", "../../x"));
        assert!(!ok("link", "/etc/passwd"));
        assert!(!ok("d/link", "../l1/.."), "a .. after a name is refused");
    }
}
