//! The virtio-serial port that carries the host ↔ agent channel.
//!
//! The port is found by name under `/sys/class/virtio-ports/*/name`; its device
//! node is `/dev/<directory name>`. It can be opened only once, so the agent
//! opens it once, read-write, and keeps it for its whole life.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fdio::{self, FdReader, FdWriter, Quirks};

/// Errors finding or opening the port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// No port with the name appeared in time.
    #[error("no virtio-serial port named {name} after {waited:?}")]
    NotFound {
        /// The port's name.
        name: String,
        /// How long the agent waited.
        waited: Duration,
    },
    /// The device node could not be opened or registered.
    #[error("open {path}")]
    Open {
        /// The device node.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The device node of the port called `name`, given sysfs's `class` directory
/// (`/sys/class`) and the device directory (`/dev`).
pub fn find(name: &str, class_dir: &Path, dev_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(class_dir.join("virtio-ports")).ok()?;
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if text.trim_end() == name {
            return Some(dev_dir.join(entry.file_name()));
        }
    }
    None
}

/// Waits up to `timeout` for the port's device node to exist.
///
/// # Errors
///
/// Fails when it does not appear in time.
pub fn wait_for(name: &str, timeout: Duration) -> Result<PathBuf, PortError> {
    let start = Instant::now();
    loop {
        if let Some(path) = find(name, Path::new("/sys/class"), Path::new("/dev")) {
            if path.exists() {
                return Ok(path);
            }
        }
        if start.elapsed() >= timeout {
            return Err(PortError::NotFound {
                name: name.to_owned(),
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens the port once and splits it into a reader and a writer.
///
/// # Errors
///
/// Fails when the node cannot be opened (a second open is `EBUSY`).
pub fn open(path: &Path) -> Result<(FdReader, FdWriter), PortError> {
    let wrap = |source| PortError::Open {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(wrap)?;
    fdio::split(OwnedFd::from(file), Quirks::Port).map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_found_by_its_name() {
        let sys = tempfile::tempdir().expect("tempdir");
        for (dir, name) in [("vport0p0", "other"), ("vport1p1", "hearth.agent")] {
            let port = sys.path().join("virtio-ports").join(dir);
            std::fs::create_dir_all(&port).expect("mkdir");
            std::fs::write(port.join("name"), format!("{name}\n")).expect("write");
        }
        let found = find("hearth.agent", sys.path(), Path::new("/dev"));
        assert_eq!(found, Some(PathBuf::from("/dev/vport1p1")));
        assert_eq!(find("missing", sys.path(), Path::new("/dev")), None);
    }
}
