//! The boot sequence of PID 1, from the initramfs to the image's root.
//!
//! 1. Mount `/proc`, `/sys`, `/dev` (devtmpfs), `/dev/pts` and `/dev/shm`,
//!    and point stdin, stdout and stderr at `/dev/console`.
//! 2. Load the kernel modules of `/lib/modules/load-order`, in order.
//! 3. Bring up the loopback interface (tunnels connect to 127.0.0.1).
//! 4. Mount `/dev/vda` (ext4) and switch into it as `switch_root` does: the
//!    initramfs is rootfs, which cannot be pivoted away from, so the new root
//!    is moved over `/` and entered with `chroot`. Without a disk the agent
//!    stays on the initramfs.
//!
//! No step is fatal: each failure is logged and boot goes on, so the host can
//! still reach the agent and see what went wrong.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};

use crate::process::DEFAULT_PATH;
use crate::{console, say, sys};

/// Where the initramfs keeps the modules and their load order.
pub const MODULE_DIR: &str = "/lib/modules";

/// The root filesystem's block device.
pub const ROOT_DEVICE: &str = "/dev/vda";

/// Where the root filesystem is mounted before the switch.
pub const NEW_ROOT: &str = "/newroot";

/// How long to wait for the root device when a virtio disk exists.
const DISK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for the root device when no virtio disk is listed: the
/// virtio bus is enumerated when `virtio_mmio` loads, so only a short grace.
const NO_DISK_TIMEOUT: Duration = Duration::from_millis(100);

/// What the boot sequence achieved.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootReport {
    /// The image's root filesystem is mounted and entered.
    pub root_mounted: bool,
}

/// Errors of one boot step.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A mount or move failed.
    #[error("mount {what} on {target}")]
    Mount {
        /// What was mounted.
        what: String,
        /// Where.
        target: String,
        /// Why.
        #[source]
        source: Errno,
    },
    /// Entering the new root failed.
    #[error("switch to the root filesystem")]
    Switch(#[source] Errno),
    /// A file or directory could not be used.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the boot sequence; see the module documentation.
pub fn boot() -> BootReport {
    mount_early();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    say!("{} starting on {release}", env!("CARGO_PKG_VERSION"));
    std::env::set_var("PATH", DEFAULT_PATH);

    load_modules(Path::new(MODULE_DIR));
    if let Err(err) = sys::loopback_up() {
        say!("loopback: {}", crate::io_text(&err));
    }

    let root_mounted = match mount_root() {
        Ok(true) => {
            say!("root filesystem mounted from {ROOT_DEVICE}");
            true
        }
        Ok(false) => {
            say!("no disk: staying on the initramfs");
            false
        }
        Err(err) => {
            say!("{}", crate::describe(&err));
            false
        }
    };
    prepare_root();
    BootReport { root_mounted }
}

fn mount_fs(
    fstype: &str,
    target: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), BootError> {
    make_dir(target, 0o755)?;
    match mount(Some(fstype), target, Some(fstype), flags, data) {
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(source) => Err(BootError::Mount {
            what: fstype.to_owned(),
            target: target.to_owned(),
            source,
        }),
    }
}

fn make_dir(path: &str, mode: u32) -> Result<(), BootError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| BootError::Io {
            what: format!("create {path}"),
            source,
        })
}

/// Mounts the kernel's filesystems; errors go to the console once it works.
fn mount_early() {
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let steps = [
        ("proc", "/proc", quiet, None),
        ("sysfs", "/sys", quiet, None),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("gid=5,mode=0620,ptmxmode=0666"),
        ),
        (
            "tmpfs",
            "/dev/shm",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
    ];
    let mut failures = Vec::new();
    for (fstype, target, flags, data) in steps {
        if let Err(err) = mount_fs(fstype, target, flags, data) {
            failures.push(crate::describe(&err));
        }
    }
    attach_console();
    for failure in failures {
        say!("{failure}");
    }
}

/// Points fds 0, 1 and 2 at `/dev/console` and starts the console writer.
fn attach_console() {
    if let Ok(console_file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")
    {
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(console_file.as_raw_fd(), fd);
        }
    }
    console::init();
}

/// Module file names from a `load-order` file: one per line, blank lines and
/// `#` comments skipped, anything that is not a plain file name ignored.
pub fn parse_load_order(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|line| !line.contains('/') && *line != "." && *line != "..")
        .map(str::to_owned)
        .collect()
}

/// Loads the listed modules in order; a module already present is fine.
fn load_modules(dir: &Path) {
    let Ok(order) = std::fs::read_to_string(dir.join("load-order")) else {
        say!("no {}/load-order: loading no modules", dir.display());
        return;
    };
    let names = parse_load_order(&order);
    let empty = CString::default();
    let mut loaded = 0;
    for name in &names {
        let path = dir.join(name);
        let result = File::open(&path)
            .map_err(|err| crate::io_text(&err))
            .and_then(|file| {
                finit_module(&file, &empty, ModuleInitFlags::empty()).or_else(|errno| match errno {
                    Errno::EEXIST => Ok(()),
                    errno => Err(errno.desc().to_owned()),
                })
            });
        match result {
            Ok(()) => {
                loaded += 1;
                // The kernel holds its own copy; free the initramfs's.
                let _ = std::fs::remove_file(&path);
            }
            Err(reason) => say!("module {name}: {reason}"),
        }
    }
    say!("loaded {loaded} of {} modules", names.len());
}

/// Whether a virtio block device exists (its device id is 2).
fn virtio_disk_present() -> bool {
    let Ok(entries) = std::fs::read_dir("/sys/bus/virtio/devices") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("device")).is_ok_and(|id| id.trim() == "0x0002")
    })
}

/// Waits for the root device; false when there is no disk.
fn wait_for_disk() -> bool {
    let start = Instant::now();
    loop {
        if Path::new(ROOT_DEVICE).exists() {
            return true;
        }
        let waited = start.elapsed();
        if waited >= DISK_TIMEOUT || (waited >= NO_DISK_TIMEOUT && !virtio_disk_present()) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Mounts the root device and switches into it; false when there is no disk.
fn mount_root() -> Result<bool, BootError> {
    if !wait_for_disk() {
        return Ok(false);
    }
    make_dir(NEW_ROOT, 0o755)?;
    mount(
        Some(ROOT_DEVICE),
        NEW_ROOT,
        Some("ext4"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| BootError::Mount {
        what: ROOT_DEVICE.to_owned(),
        target: NEW_ROOT.to_owned(),
        source,
    })?;

    for dir in ["/proc", "/sys", "/dev"] {
        let target = format!("{NEW_ROOT}{dir}");
        make_dir(&target, 0o755)?;
        mount(
            Some(dir),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|source| BootError::Mount {
            what: dir.to_owned(),
            target,
            source,
        })?;
    }

    nix::unistd::chdir(NEW_ROOT).map_err(BootError::Switch)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(BootError::Switch)?;
    nix::unistd::chroot(".").map_err(BootError::Switch)?;
    nix::unistd::chdir("/").map_err(BootError::Switch)?;
    Ok(true)
}

/// Makes the directories every root (image or initramfs) needs exist.
fn prepare_root() {
    if !Path::new("/tmp").exists() {
        if let Err(err) = make_dir("/tmp", 0o1777) {
            say!("{}", crate::describe(&err));
        }
        // The umask cuts the sticky, world-writable mode short.
        let _ = std::fs::set_permissions("/tmp", std::fs::Permissions::from_mode(0o1777));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_order_keeps_plain_names_in_order() {
        let text = "virtio_ring.ko\n\n# comment\nvirtio.ko \n../evil.ko\nvirtio_blk.ko\n";
        assert_eq!(
            parse_load_order(text),
            vec!["virtio_ring.ko", "virtio.ko", "virtio_blk.ko"]
        );
    }
}
