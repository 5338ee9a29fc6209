//! Saving and loading a VM's state as a QEMU migration stream.
//!
//! QEMU 7.2 has no `file:` migration URI, so the driver stands in for the
//! other end: to save, it listens on a unix socket in a private temporary
//! directory, has QEMU `migrate` to it, and writes what arrives to
//! `<path>.tmp` while hashing it, then syncs and renames. To load, QEMU
//! (started with `-incoming defer` and `-S`) listens after
//! `migrate-incoming`, and the driver feeds it the file, whose checksum it
//! has verified first. Completion is read from `query-migrate`; a failed
//! load makes QEMU exit, which ends the wait with QEMU's own message.

use std::ffi::OsString;
use std::io::Write;
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{QemuVm, VmError};
use crate::digest;

/// The bound on a whole save or load.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The bound on QEMU connecting to the driver's socket, or the reverse.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream that stalls this long is abandoned.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the migration status is polled.
const POLL: Duration = Duration::from_millis(20);

/// What a save or load moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateInfo {
    /// The size of the state file in bytes.
    pub bytes: u64,
    /// Its BLAKE3 hash, lowercase hex.
    pub blake3: String,
    /// How long the operation took, end to end.
    pub duration: Duration,
}

impl QemuVm {
    /// Saves the VM's state to `path`. The VM is paused first and stays
    /// paused (QEMU calls it `postmigrate`); [`QemuVm::resume`] runs it on.
    ///
    /// # Errors
    ///
    /// [`VmError::StateIo`] when the file cannot be written,
    /// [`VmError::Migration`] when QEMU reports a failed migration, and the
    /// errors of [`QemuVm::execute`]. Nothing is left at `path` on error.
    #[tracing::instrument(level = "debug", skip_all, fields(pid = self.pid))]
    pub async fn save_state(&self, path: &Path) -> Result<StateInfo, VmError> {
        let started = Instant::now();
        let tmp = tmp_path(path);
        let result = self.save_to(&tmp).await;

        let (bytes, blake3) = match result {
            Ok(done) => done,
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(error);
            }
        };
        std::fs::rename(&tmp, path).map_err(|source| state_io(path, source))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            digest::sync_dir(parent).map_err(|source| state_io(parent, source))?;
        }

        let info = StateInfo {
            bytes,
            blake3,
            duration: started.elapsed(),
        };
        tracing::info!(pid = self.pid, bytes, duration = ?info.duration, "state saved");
        Ok(info)
    }

    async fn save_to(&self, tmp: &Path) -> Result<(u64, String), VmError> {
        let dir = socket_dir()?;
        let socket = dir.path().join("m.sock");
        let listener =
            tokio::net::UnixListener::bind(&socket).map_err(|source| state_io(&socket, source))?;

        if self.status().await? == "running" {
            self.pause().await?;
        }
        self.prepare_migration().await?;
        // Unlimited bandwidth: the default throttles a paused VM's save to 32 MiB/s.
        let params = json!({ "max-bandwidth": 1u64 << 40 });
        self.execute("migrate-set-parameters", Some(params)).await?;
        self.execute("migrate", Some(json!({ "uri": unix_uri(&socket) })))
            .await?;

        let accept = async {
            let (stream, _) = listener.accept().await.map_err(|s| state_io(&socket, s))?;
            Ok(stream)
        };
        let stream = self
            .bounded("migration connect", CONNECT_TIMEOUT, accept)
            .await?;
        let mut stream = blocking_stream(stream, &socket)?;

        let target = tmp.to_owned();
        let copy = tokio::task::spawn_blocking(move || digest::copy_hashed(&mut stream, &target));
        let copied = join(copy, tmp).await;

        // QEMU's verdict first: it explains a short stream better than the copy.
        self.wait_migration("save").await?;
        copied
    }

    /// Loads the state saved at `path` into this VM, which must have been
    /// started with `incoming`. The file's BLAKE3 must equal
    /// `expected_blake3`; it is checked before QEMU reads a byte. The VM is
    /// paused afterwards; [`QemuVm::resume`] runs it.
    ///
    /// # Errors
    ///
    /// [`VmError::NotIncoming`], [`VmError::ChecksumMismatch`],
    /// [`VmError::StateIo`], and [`VmError::Exited`] when QEMU rejects the
    /// stream (QEMU exits then; its message is in the error).
    #[tracing::instrument(level = "debug", skip_all, fields(pid = self.pid))]
    pub async fn load_state(
        &self,
        path: &Path,
        expected_blake3: &str,
    ) -> Result<StateInfo, VmError> {
        if !self.config.incoming {
            return Err(VmError::NotIncoming);
        }
        let started = Instant::now();

        let target = path.to_owned();
        let hashed = tokio::task::spawn_blocking(move || digest::hash_file(&target));
        let (bytes, actual) = match hashed.await {
            Ok(result) => result.map_err(|source| state_io(path, source))?,
            Err(join) => return Err(state_io(path, std::io::Error::other(join))),
        };
        if !actual.eq_ignore_ascii_case(expected_blake3) {
            return Err(VmError::ChecksumMismatch {
                path: path.to_owned(),
                expected: expected_blake3.to_owned(),
                actual,
            });
        }

        self.feed(path).await?;
        let info = StateInfo {
            bytes,
            blake3: actual,
            duration: started.elapsed(),
        };
        tracing::info!(pid = self.pid, bytes, duration = ?info.duration, "state loaded");
        Ok(info)
    }

    async fn feed(&self, path: &Path) -> Result<(), VmError> {
        let dir = socket_dir()?;
        let socket = dir.path().join("m.sock");

        self.prepare_migration().await?;
        self.execute(
            "migrate-incoming",
            Some(json!({ "uri": unix_uri(&socket) })),
        )
        .await?;
        let connect = async {
            loop {
                match tokio::net::UnixStream::connect(&socket).await {
                    Ok(stream) => return Ok(stream),
                    Err(_) => tokio::time::sleep(POLL).await,
                }
            }
        };
        let stream = self
            .bounded("migration connect", CONNECT_TIMEOUT, connect)
            .await?;
        let mut stream = blocking_stream(stream, &socket)?;

        let source = path.to_owned();
        let copy = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
            let mut file = std::fs::File::open(&source)?;
            let n = std::io::copy(&mut file, &mut stream)?;
            stream.flush()?;
            stream.shutdown(Shutdown::Write)?;
            Ok((n, String::new()))
        });
        let copied = join(copy, path).await;

        self.wait_migration("load").await?;
        copied.map(drop)
    }

    /// Turns on MIGRATION events, which QEMU sends only when asked.
    async fn prepare_migration(&self) -> Result<(), VmError> {
        let caps = json!({ "capabilities": [{ "capability": "events", "state": true }] });
        self.execute("migrate-set-capabilities", Some(caps))
            .await
            .map(drop)
    }

    /// Polls `query-migrate` until the migration completes or fails.
    async fn wait_migration(&self, during: &'static str) -> Result<(), VmError> {
        let poll = async {
            loop {
                let info = self.execute("query-migrate", None).await?;
                let status = info.get("status").and_then(Value::as_str).unwrap_or("none");
                match status {
                    "completed" => return Ok(()),
                    "failed" | "cancelled" => {
                        let detail = info.get("error-desc").and_then(Value::as_str);
                        return Err(VmError::Migration {
                            status: status.to_owned(),
                            detail: detail.unwrap_or("no detail").to_owned(),
                        });
                    }
                    _ => tokio::time::sleep(POLL).await,
                }
            }
        };
        let during = if during == "save" {
            "state save"
        } else {
            "state load"
        };
        self.bounded(during, MIGRATION_TIMEOUT, poll).await
    }
}

/// `<path>.tmp`, beside `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A private directory for a migration socket; under the system temp
/// directory because socket paths are short.
fn socket_dir() -> Result<tempfile::TempDir, VmError> {
    tempfile::Builder::new()
        .prefix("hearth-mig")
        .tempdir()
        .map_err(|source| state_io(&std::env::temp_dir(), source))
}

fn unix_uri(socket: &Path) -> String {
    format!("unix:{}", socket.display())
}

fn state_io(path: &Path, source: std::io::Error) -> VmError {
    VmError::StateIo {
        path: path.to_owned(),
        source,
    }
}

/// A blocking std stream for a copy thread, which gives up on a stall.
fn blocking_stream(
    stream: tokio::net::UnixStream,
    socket: &Path,
) -> Result<std::os::unix::net::UnixStream, VmError> {
    let stream = stream
        .into_std()
        .map_err(|source| state_io(socket, source))?;
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(STALL_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(STALL_TIMEOUT)));
    setup.map_err(|source| state_io(socket, source))?;
    Ok(stream)
}

async fn join(
    task: tokio::task::JoinHandle<std::io::Result<(u64, String)>>,
    path: &Path,
) -> Result<(u64, String), VmError> {
    match task.await {
        Ok(result) => result.map_err(|source| state_io(path, source)),
        Err(join) => Err(state_io(path, std::io::Error::other(join))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_path_appends() {
        assert_eq!(
            tmp_path(Path::new("/s/memory")),
            PathBuf::from("/s/memory.tmp")
        );
    }
}
