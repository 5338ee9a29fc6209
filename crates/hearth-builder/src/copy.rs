//! COPY and ADD: finding the sources, hashing them for the cache key, and
//! copying them into a stage's root file system.
//!
//! Sources come from a tree: the build context (filtered by
//! `.dockerignore`) or, for `COPY --from`, another stage's root file system.
//! A source path resolves inside its tree (a symlink cannot lead out of the
//! context); globs match one path component per `*` as Docker's do. The
//! destination resolves inside the stage's root the same way.
//!
//! Docker's rules: a directory source copies its contents; several sources
//! need a destination ending in `/`; a destination that ends in `/` or is
//! an existing directory receives files under their own names. Copied files
//! keep their mode (unless `--chmod`) and mtime, and belong to root (unless
//! `--chown`). ADD also unpacks a local tar archive (plain or gzip) into
//! the destination directory.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use globset::GlobBuilder;
use sha2::{Digest, Sha256};

use crate::fsutil::{clean_relative, mkdir_in_root, remove_any, resolve_in_root};
use crate::ignore::IgnoreMatcher;
use crate::layer::{self, ApplyOptions, LayerError};

/// Why a COPY or ADD failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A source that climbs out of its tree.
    #[error("source {pattern:?} is outside the build context")]
    Outside {
        /// The source as given.
        pattern: String,
    },
    /// A source that does not exist (or is excluded).
    #[error("source {pattern:?} not found in {tree} (or excluded by .dockerignore)")]
    NotFound {
        /// The source as given.
        pattern: String,
        /// Where it was looked for.
        tree: String,
    },
    /// A glob that matched nothing.
    #[error("source {pattern:?} matched no files")]
    NoMatch {
        /// The glob.
        pattern: String,
    },
    /// A malformed glob.
    #[error("source {pattern:?} is not a valid pattern")]
    BadPattern {
        /// The glob.
        pattern: String,
    },
    /// Several sources and a destination that is not a directory.
    #[error("more than one source needs a destination directory ending in / (got {dest:?})")]
    DestNotDir {
        /// The destination.
        dest: String,
    },
    /// `--chown` naming an unknown user or group.
    #[error("--chown: no {kind} {name:?} in the image's /etc/{file}")]
    UnknownOwner {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
        /// `passwd` or `group`.
        file: &'static str,
    },
    /// `--chmod` that is not an octal mode.
    #[error("--chmod: {value:?} is not an octal mode")]
    BadChmod {
        /// The value.
        value: String,
    },
    /// An archive compressed with something hearth cannot read.
    #[error("ADD: {path} is a {kind} archive, which is not supported (use tar or tar.gz)")]
    UnsupportedArchive {
        /// The archive.
        path: String,
        /// Its compression.
        kind: &'static str,
    },
    /// An archive that could not be unpacked.
    #[error("ADD: cannot unpack {path}")]
    Archive {
        /// The archive.
        path: String,
        /// What went wrong.
        #[source]
        source: LayerError,
    },
    /// A file-system failure.
    #[error("cannot copy {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A tree that sources are taken from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceTree<'a> {
    /// Its root directory.
    pub root: &'a Path,
    /// `.dockerignore`, for the build context.
    pub ignore: Option<&'a IgnoreMatcher>,
    /// A name for messages (`the build context`, `stage build`).
    pub label: &'a str,
}

/// One source after resolution.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Its path relative to the tree root, after following symlinks.
    rel: PathBuf,
    /// The name it is copied under.
    name: String,
    /// Whether it is a directory (whose contents are copied).
    is_dir: bool,
}

/// How to copy.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CopyOptions {
    /// `--chown`, resolved; `None` is root.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// ADD: unpack local tar archives.
    pub unpack_archives: bool,
}

impl SourceTree<'_> {
    fn excluded(&self, rel: &Path) -> bool {
        self.ignore.is_some_and(|m| m.is_excluded(rel))
    }

    /// Resolves source paths and globs.
    pub(crate) fn resolve(&self, patterns: &[String]) -> Result<Vec<Source>, CopyError> {
        let mut sources = Vec::new();
        for pattern in patterns {
            let rel = clean_relative(Path::new(pattern)).ok_or_else(|| CopyError::Outside {
                pattern: pattern.clone(),
            })?;
            if pattern.contains(['*', '?', '[']) {
                sources.extend(self.glob(pattern, &rel)?);
                continue;
            }

            let not_found = || CopyError::NotFound {
                pattern: pattern.clone(),
                tree: self.label.to_owned(),
            };
            if self.excluded(&rel) && !rel.as_os_str().is_empty() {
                return Err(not_found());
            }
            let abs = resolve_in_root(self.root, &rel, true).map_err(|_| not_found())?;
            let meta = fs::metadata(&abs).map_err(|_| not_found())?;
            let resolved = abs
                .strip_prefix(self.root)
                .unwrap_or(Path::new(""))
                .to_path_buf();
            sources.push(Source {
                name: file_name(&rel),
                rel: resolved,
                is_dir: meta.is_dir(),
            });
        }
        Ok(sources)
    }

    fn glob(&self, pattern: &str, rel: &Path) -> Result<Vec<Source>, CopyError> {
        let glob = GlobBuilder::new(&rel.to_string_lossy())
            .literal_separator(true)
            .build()
            .map_err(|_| CopyError::BadPattern {
                pattern: pattern.to_owned(),
            })?
            .compile_matcher();

        let mut matches: Vec<Source> = Vec::new();
        for entry in self.walk(Path::new(""))? {
            if !glob.is_match(&entry.rel) {
                continue;
            }
            // A match inside an earlier matched directory is already copied.
            if matches
                .iter()
                .any(|m| m.is_dir && entry.rel.starts_with(&m.rel))
            {
                continue;
            }
            matches.push(Source {
                name: file_name(&entry.rel),
                is_dir: entry.meta.is_dir(),
                rel: entry.rel,
            });
        }
        if matches.is_empty() {
            return Err(CopyError::NoMatch {
                pattern: pattern.to_owned(),
            });
        }
        Ok(matches)
    }

    /// Every path under `start` (relative to the tree root), sorted,
    /// without following symlinks and without excluded paths.
    fn walk(&self, start: &Path) -> Result<Vec<Walked>, CopyError> {
        let mut out = Vec::new();
        self.walk_into(start, &mut out)?;
        Ok(out)
    }

    fn walk_into(&self, rel: &Path, out: &mut Vec<Walked>) -> Result<(), CopyError> {
        let dir = self.root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(io_error(&dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(io_error(&dir))?;
        names.sort();

        for name in names {
            let child = rel.join(&name);
            let abs = self.root.join(&child);
            let meta = fs::symlink_metadata(&abs).map_err(io_error(&abs))?;
            let excluded = self.excluded(&child);
            let descend =
                meta.is_dir() && (!excluded || self.ignore.is_some_and(|m| m.has_exceptions()));
            if !excluded {
                out.push(Walked {
                    rel: child.clone(),
                    meta,
                });
            }
            if descend {
                self.walk_into(&child, out)?;
            }
        }
        Ok(())
    }

    /// A content hash of the sources: path, type, mode, and content or
    /// link target of every file they hold.
    pub(crate) fn hash(&self, sources: &[Source]) -> Result<String, CopyError> {
        let mut hasher = Sha256::new();
        for source in sources {
            field(&mut hasher, source.name.as_bytes());
            let entries = match source.is_dir {
                true => self.walk(&source.rel)?,
                false => {
                    let abs = self.root.join(&source.rel);
                    let meta = fs::metadata(&abs).map_err(io_error(&abs))?;
                    vec![Walked {
                        rel: source.rel.clone(),
                        meta,
                    }]
                }
            };
            for entry in entries {
                let abs = self.root.join(&entry.rel);
                let inner = entry.rel.strip_prefix(&source.rel).unwrap_or(&entry.rel);
                field(&mut hasher, inner.to_string_lossy().as_bytes());
                field(&mut hasher, format!("{:o}", entry.meta.mode()).as_bytes());
                if entry.meta.file_type().is_symlink() {
                    let target = fs::read_link(&abs).map_err(io_error(&abs))?;
                    field(&mut hasher, target.to_string_lossy().as_bytes());
                } else if entry.meta.is_file() {
                    let digest = file_digest(&abs).map_err(io_error(&abs))?;
                    field(&mut hasher, &digest);
                }
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

struct Walked {
    rel: PathBuf,
    meta: fs::Metadata,
}

/// The SHA-256 of a file's content.
fn file_digest(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hasher.finalize().to_vec()),
            n => hasher.update(&buf[..n]),
        }
    }
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn file_name(rel: &Path) -> String {
    rel.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Copies resolved sources into `rootfs` at `dest` (an absolute path in
/// the image; a trailing `/` marks a directory).
pub(crate) fn copy_sources(
    tree: &SourceTree<'_>,
    sources: &[Source],
    rootfs: &Path,
    dest: &str,
    options: CopyOptions,
) -> Result<(), CopyError> {
    let dest_rel = clean_relative(Path::new(dest)).unwrap_or_default();
    let dest_abs = resolve_in_root(rootfs, &dest_rel, true).map_err(io_error(Path::new(dest)))?;
    let into_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || dest_abs.is_dir();
    if sources.len() > 1 && !into_dir {
        return Err(CopyError::DestNotDir {
            dest: dest.to_owned(),
        });
    }
    let copier = Copier {
        tree,
        rootfs,
        options,
    };

    for source in sources {
        let source_abs = tree.root.join(&source.rel);
        if source.is_dir {
            copier.dir_contents(&source.rel, &dest_rel)?;
        } else if options.unpack_archives && is_archive(&source_abs)? {
            let target = copier.mkdir(&dest_rel)?;
            unpack(&source_abs, &target)?;
        } else {
            let target_rel = match into_dir {
                true => dest_rel.join(&source.name),
                false => dest_rel.clone(),
            };
            copier.file(&source_abs, &target_rel)?;
        }
    }
    Ok(())
}

struct Copier<'a> {
    tree: &'a SourceTree<'a>,
    rootfs: &'a Path,
    options: CopyOptions,
}

impl Copier<'_> {
    fn owner(&self) -> (u32, u32) {
        self.options.owner.unwrap_or((0, 0))
    }

    /// Creates a destination directory (and its parents) and owns it.
    fn mkdir(&self, rel: &Path) -> Result<PathBuf, CopyError> {
        let existed = resolve_in_root(self.rootfs, rel, true)
            .map(|p| p.is_dir())
            .unwrap_or(false);
        let path = mkdir_in_root(self.rootfs, rel).map_err(io_error(rel))?;
        if !existed && self.options.owner.is_some() {
            self.chown(&path)?;
        }
        Ok(path)
    }

    fn dir_contents(&self, source_rel: &Path, dest_rel: &Path) -> Result<(), CopyError> {
        self.mkdir(dest_rel)?;
        let mut dirs = Vec::new();
        for entry in self.tree.walk(source_rel)? {
            let inner = entry.rel.strip_prefix(source_rel).unwrap_or(&entry.rel);
            let target_rel = dest_rel.join(inner);
            let source_abs = self.tree.root.join(&entry.rel);
            let kind = entry.meta.file_type();

            if kind.is_dir() {
                let path =
                    mkdir_in_root(self.rootfs, &target_rel).map_err(io_error(&target_rel))?;
                self.chown(&path)?;
                let mode = self.options.chmod.unwrap_or(entry.meta.mode() & 0o7777);
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(io_error(&path))?;
                dirs.push((path, FileTime::from_last_modification_time(&entry.meta)));
            } else if kind.is_symlink() {
                let target = fs::read_link(&source_abs).map_err(io_error(&source_abs))?;
                let path = self.prepare(&target_rel)?;
                std::os::unix::fs::symlink(&target, &path).map_err(io_error(&path))?;
                let (uid, gid) = self.owner();
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io_error(&path))?;
            } else if kind.is_file() {
                self.file(&source_abs, &target_rel)?;
            }
            // Sockets, FIFOs and devices in a context are not copied.
        }

        for (dir, mtime) in dirs.iter().rev() {
            filetime::set_file_mtime(dir, *mtime).map_err(io_error(dir))?;
        }
        Ok(())
    }

    /// Makes the parent of `target_rel` and clears the target; returns
    /// where to create it.
    fn prepare(&self, target_rel: &Path) -> Result<PathBuf, CopyError> {
        let parent = target_rel.parent().unwrap_or(Path::new(""));
        let parent_abs = mkdir_in_root(self.rootfs, parent).map_err(io_error(parent))?;
        let path = parent_abs.join(target_rel.file_name().unwrap_or_default());
        remove_any(&path).map_err(io_error(&path))?;
        Ok(path)
    }

    fn file(&self, source_abs: &Path, target_rel: &Path) -> Result<(), CopyError> {
        let meta = fs::metadata(source_abs).map_err(io_error(source_abs))?;
        let path = self.prepare(target_rel)?;
        let mut input = fs::File::open(source_abs).map_err(io_error(source_abs))?;
        let mut output = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        io::copy(&mut input, &mut output).map_err(io_error(&path))?;
        drop(output);

        self.chown(&path)?;
        let mode = self.options.chmod.unwrap_or(meta.mode() & 0o7777);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_error(&path))?;
        filetime::set_file_mtime(&path, FileTime::from_last_modification_time(&meta))
            .map_err(io_error(&path))
    }

    fn chown(&self, path: &Path) -> Result<(), CopyError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        let (uid, gid) = self.owner();
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_error(path))
    }
}

/// Whether a file is a tar archive ADD unpacks; errors for compressions it
/// recognises but cannot read.
fn is_archive(path: &Path) -> Result<bool, CopyError> {
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let mut head = [0u8; 512];
    let n = layer::read_prefix(&mut file, &mut head).map_err(io_error(path))?;
    let head = &head[..n];

    let unsupported = |kind| CopyError::UnsupportedArchive {
        path: path.display().to_string(),
        kind,
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = [0u8; 512];
        let file = fs::File::open(path).map_err(io_error(path))?;
        let mut gz = flate2::read::GzDecoder::new(file);
        let got = layer::read_prefix(&mut gz, &mut inner).unwrap_or(0);
        return Ok(got == 512 && looks_like_tar(&inner));
    }
    // Limitation: ADD unpacks plain and gzip tar archives only; bzip2, xz and zstd are refused.
    if head.starts_with(b"BZh") {
        return Err(unsupported("bzip2"));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(unsupported("xz"));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(unsupported("zstd"));
    }
    Ok(n == 512 && looks_like_tar(head))
}

/// Whether a 512-byte block is a valid tar header (its checksum matches).
fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 || block[..100].iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(expected) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == expected
}

fn unpack(archive: &Path, target: &Path) -> Result<(), CopyError> {
    let options = ApplyOptions {
        whiteouts: false,
        ..ApplyOptions::default()
    };
    layer::apply_layer_file(target, archive, options).map_err(|source| CopyError::Archive {
        path: archive.display().to_string(),
        source,
    })?;
    Ok(())
}

/// Resolves `--chown=user[:group]` against the image's /etc/passwd and
/// /etc/group; numbers are taken as they are. A user without a group
/// gets the same number as its group, as Docker documents.
pub(crate) fn resolve_owner(rootfs: &Path, spec: &str) -> Result<(u32, u32), CopyError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(rootfs, "passwd", user).ok_or_else(|| CopyError::UnknownOwner {
            kind: "user",
            name: user.to_owned(),
            file: "passwd",
        })?,
    };
    let gid = match group {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(rootfs, "group", g).ok_or_else(|| CopyError::UnknownOwner {
                kind: "group",
                name: g.to_owned(),
                file: "group",
            })?,
        },
    };
    Ok((uid, gid))
}

/// The id (third field) of `name` in `/etc/<file>` inside the image.
fn lookup(rootfs: &Path, file: &str, name: &str) -> Option<u32> {
    let path = resolve_in_root(rootfs, &Path::new("etc").join(file), true).ok()?;
    let mut text = String::new();
    fs::File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// Parses `--chmod`'s octal mode.
pub(crate) fn parse_chmod(value: &str) -> Result<u32, CopyError> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| CopyError::BadChmod {
            value: value.to_owned(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
