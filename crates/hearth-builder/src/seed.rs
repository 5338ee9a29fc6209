//! Seeding the base-image store with images made on this machine:
//! `busybox:latest` from the host's static busybox, and Debian with
//! `debootstrap --variant=minbase`.
//!
//! Both are idempotent: an image already in the store is returned as it is.
//! A Debian image keeps nothing of the host: its resolver, hostname and
//! hosts files are reset.
//! Both build in the store's staging area and commit only when complete.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::config::{ImageConfig, DEFAULT_PATH};
use crate::store::{ImageStore, StoreError, StoredImage};

/// Where Debian's busybox-static installs its binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";
/// The mirror used when the host's APT sources name none.
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The host's busybox is missing or not static.
    #[error("host busybox {path} is unusable: {reason} (install busybox-static)")]
    Busybox {
        /// The binary's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tag that names no Debian release hearth knows.
    #[error("cannot tell the Debian release of {reference} (use a tag such as 12 or bookworm)")]
    UnknownRelease {
        /// The reference.
        reference: String,
    },
    /// debootstrap failed.
    #[error("debootstrap {suite} from {mirror} failed with {status}: {output_tail}")]
    Debootstrap {
        /// The suite.
        suite: String,
        /// The mirror.
        mirror: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        output_tail: String,
    },
    /// Something is still mounted inside the staging tree, which is
    /// therefore left in place rather than deleted through the mount.
    #[error("mounts remain under {path} after debootstrap; left in place: {mounts:?}")]
    MountsLeft {
        /// The staging directory.
        path: PathBuf,
        /// The mount points found.
        mounts: Vec<PathBuf>,
    },
    /// A file-system or process failure.
    #[error("cannot prepare {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

/// Puts `busybox:latest` in the store, built from the host's static busybox.
///
/// # Errors
///
/// [`SeedError::Busybox`] when the host's busybox is missing or dynamic.
pub fn seed_busybox(store: &ImageStore) -> Result<StoredImage, SeedError> {
    seed_busybox_from(store, Path::new(HOST_BUSYBOX))
}

/// [`seed_busybox`] with another busybox binary.
///
/// # Errors
///
/// As [`seed_busybox`].
pub fn seed_busybox_from(store: &ImageStore, busybox: &Path) -> Result<StoredImage, SeedError> {
    const REFERENCE: &str = "busybox:latest";
    if let Some(image) = store.get(REFERENCE)? {
        return Ok(image);
    }
    let bad = |reason: String| SeedError::Busybox {
        path: busybox.to_path_buf(),
        reason,
    };
    let binary = fs::read(busybox).map_err(|e| bad(e.to_string()))?;
    if has_interpreter(&binary).map_err(bad)? {
        return Err(bad(String::from("it is dynamically linked")));
    }

    let listing = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| bad(e.to_string()))?;
    if !listing.status.success() {
        return Err(bad(String::from("`busybox --list-full` failed")));
    }

    let staging = store.stage()?;
    let root = staging.rootfs();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SeedError::Io { path, source }
    };

    for (dir, mode) in BUSYBOX_DIRS {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(io(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).map_err(io(&path))?;
    }
    let target = root.join("bin/busybox");
    fs::write(&target, &binary).map_err(io(&target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(io(&target))?;

    for applet in String::from_utf8_lossy(&listing.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        let depth = applet.matches('/').count();
        if applet.is_empty() || applet == "bin/busybox" || depth == 0 {
            continue;
        }
        let link = root.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let up = "../".repeat(depth);
        if fs::symlink_metadata(&link).is_err() {
            symlink(format!("{up}bin/busybox"), &link).map_err(io(&link))?;
        }
    }

    for (file, text) in BUSYBOX_FILES {
        let path = root.join(file);
        fs::write(&path, text).map_err(io(&path))?;
    }

    let config = ImageConfig {
        env: vec![format!("PATH={DEFAULT_PATH}")],
        cmd: vec![String::from("sh")],
        ..ImageConfig::default()
    };
    let id = format!("sha256:{}", hex::encode(Sha256::digest(&binary)));
    Ok(store.commit(staging, REFERENCE, &id, "busybox", &config)?)
}

const BUSYBOX_DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("var/log", 0o755),
    ("home", 0o755),
    ("root", 0o700),
    ("tmp", 0o1777),
];

const BUSYBOX_FILES: &[(&str, &str)] = &[
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ),
    ("etc/group", "root:x:0:\nnobody:x:65534:\n"),
    ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
];

/// Whether an ELF binary asks for a program interpreter (is dynamic).
fn has_interpreter(binary: &[u8]) -> Result<bool, String> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        binary
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        binary
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        binary
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };

    if binary.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(String::from("not a little-endian 64-bit ELF binary"));
    }
    let truncated = || String::from("truncated ELF header");
    let phoff = u64_at(0x20).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(truncated)? as usize;
    let phnum = u16_at(0x38).ok_or_else(truncated)? as usize;

    for i in 0..phnum {
        let kind = u32_at(phoff + i * phentsize).ok_or_else(truncated)?;
        if kind == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Puts a Debian image in the store, made by
/// `debootstrap --variant=minbase <suite> <dir> <mirror>`. The suite comes
/// from the tag (`12` or `bookworm`, …); the mirror defaults to the host's
/// APT sources, else [`FALLBACK_MIRROR`].
///
/// # Errors
///
/// [`SeedError`]; a failed debootstrap reports its last lines.
pub async fn seed_debian(
    store: &ImageStore,
    reference: &str,
    mirror: Option<&str>,
) -> Result<StoredImage, SeedError> {
    if let Some(image) = store.get(reference)? {
        return Ok(image);
    }
    let suite = debian_suite(reference).ok_or_else(|| SeedError::UnknownRelease {
        reference: reference.to_owned(),
    })?;
    let mirror = match mirror {
        Some(m) => m.to_owned(),
        None => host_debian_mirror(suite).unwrap_or_else(|| FALLBACK_MIRROR.to_owned()),
    };

    let staging = store.stage()?;
    let root = staging.rootfs();
    tracing::info!(image = reference, suite, mirror = %mirror, "running debootstrap");
    let output = Command::new("debootstrap")
        .args(["--variant=minbase", suite])
        .arg(&root)
        .arg(&mirror)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| SeedError::Io {
            path: PathBuf::from("debootstrap"),
            source,
        })?;

    // debootstrap mounts proc and sys inside the target; never delete
    // through a mount that it left behind.
    let mounts = mounts_under(&root);
    if !mounts.is_empty() {
        let path = staging.abandon();
        return Err(SeedError::MountsLeft { path, mounts });
    }

    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        return Err(SeedError::Debootstrap {
            suite: suite.to_owned(),
            mirror,
            status: output.status.to_string(),
            output_tail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }

    // debootstrap copies the host's resolver, hostname and hosts into the
    // tree; an image must not carry them.
    for (file, text) in DEBIAN_HOST_FILES {
        let path = root.join(file);
        fs::write(&path, text)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o644)))
            .map_err(|source| SeedError::Io {
                path: path.clone(),
                source,
            })?;
    }

    let config = ImageConfig {
        env: vec![format!("PATH={DEFAULT_PATH}")],
        cmd: vec![String::from("bash")],
        ..ImageConfig::default()
    };
    let id = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(format!(
            "debootstrap {suite} {mirror} {:?}",
            std::time::SystemTime::now()
        )))
    );
    Ok(store.commit(staging, reference, &id, "debootstrap", &config)?)
}

/// The files of a Debian image that say nothing of the host it was made on.
const DEBIAN_HOST_FILES: &[(&str, &str)] = &[
    ("etc/resolv.conf", ""),
    ("etc/hostname", "localhost\n"),
    (
        "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    ),
];

/// The Debian suite a reference's tag names.
pub fn debian_suite(reference: &str) -> Option<&'static str> {
    let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
    let base = tag.split(['-', '.']).next().unwrap_or(tag);
    match base {
        "13" | "trixie" => Some("trixie"),
        "12" | "bookworm" | "latest" | "stable" => Some("bookworm"),
        "11" | "bullseye" => Some("bullseye"),
        _ => None,
    }
}

/// The first `deb` mirror in the host's APT sources that serves `suite`.
pub fn host_debian_mirror(suite: &str) -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|path| {
        let text = fs::read_to_string(path).ok()?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_from_deb822(&text, suite),
            Some("list") => mirror_from_one_line(&text, suite),
            _ => None,
        }
    })
}

/// Parses one-line sources (`deb [opts] URI suite components`).
fn mirror_from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let rest = line.strip_prefix("deb ")?.trim();
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']')?.1.trim(),
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        (words.next()? == suite).then(|| uri.to_owned())
    })
}

/// Parses deb822 sources (blocks of `Types:`, `URIs:`, `Suites:`).
fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|w| w == "deb"));
        let enabled = field("Enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"));
        let serves = field("Suites").is_some_and(|s| s.split_whitespace().any(|w| w == suite));
        if is_deb && enabled && serves {
            if let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(str::to_owned))
            {
                return Some(uri);
            }
        }
    }
    None
}

/// Mount points at or under `path`, from `/proc/self/mountinfo`.
fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let mut text = String::new();
    let read = fs::File::open("/proc/self/mountinfo").and_then(|mut f| f.read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    let base = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&base))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn suites_come_from_tags() {
        assert_eq!(debian_suite("debian:12"), Some("bookworm"));
        assert_eq!(debian_suite("debian:bookworm-slim"), Some("bookworm"));
        assert_eq!(debian_suite("debian"), Some("bookworm"));
        assert_eq!(debian_suite("debian:11"), Some("bullseye"));
        assert_eq!(debian_suite("debian:9"), None);
    }

    #[test]
    fn mirrors_are_read_from_both_source_formats() {
        let deb822 =
            "Types: deb\nURIs: http://mirror.one/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: http://sec/debian-security\n\
                      Suites: bookworm-security\n";
        assert_eq!(
            mirror_from_deb822(deb822, "bookworm").unwrap(),
            "http://mirror.one/debian"
        );
        assert_eq!(mirror_from_deb822(deb822, "trixie"), None);

        let list = "# c\ndeb-src http://src bookworm main\ndeb [arch=amd64] http://two/debian bookworm main\n";
        assert_eq!(
            mirror_from_one_line(list, "bookworm").unwrap(),
            "http://two/debian"
        );
    }

    #[test]
    fn host_busybox_is_static_and_seeds_once() {
        if !Path::new(HOST_BUSYBOX).exists() {
            return;
        }
        assert_eq!(has_interpreter(&fs::read(HOST_BUSYBOX).unwrap()), Ok(false));
        assert_eq!(has_interpreter(&fs::read("/bin/ls").unwrap()), Ok(true));

        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let first = seed_busybox(&store).unwrap();
        assert!(first.rootfs.join("bin/busybox").is_file());
        assert_eq!(
            fs::read_link(first.rootfs.join("bin/sh")).unwrap(),
            Path::new("../bin/busybox")
        );
        assert_eq!(first.config.cmd, vec!["sh"]);
        let again = seed_busybox(&store).unwrap();
        assert_eq!(first, again);
    }
}
