//! `WriteFile` and `ReadFile`: whole files over channel 0.
//!
//! A write lands in a temporary file beside the target, is synced, given its
//! mode and renamed over the target, so a reader never sees half a file and a
//! write cut short (the host closing the stream) leaves nothing behind.
//! Missing parent directories are created. A write "as the app" gives the
//! file to the app's user and group, as a file copied into its container
//! should be.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_protocol::{Control, Event, Stream, StreamReceiver, CHAN_STDIO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::agent::{answer, refuse};

/// Mode of a written file when the request gives none.
pub const DEFAULT_MODE: u32 = 0o644;

/// Errors reading or writing a file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Paths must be absolute.
    #[error("path {0} is not absolute")]
    NotAbsolute(String),
    /// Writing failed.
    #[error("write {path}")]
    Write {
        /// The target.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading failed.
    #[error("read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Serves `WriteFile`; the file is given to `owner` (uid, gid) if any.
pub async fn write(path: String, mode: Option<u32>, owner: Option<(u32, u32)>, stream: Stream) {
    let (tx, mut rx) = stream.split();
    match write_file(&path, mode.unwrap_or(DEFAULT_MODE), owner, &mut rx).await {
        Ok(true) => answer(
            &tx,
            Control::Ok {
                value: serde_json::Value::Null,
            },
        ),
        Ok(false) => {}
        Err(err) => refuse(&tx, &crate::describe(&err)),
    }
}

/// Writes the stream's data to `path`; false when the stream closed first.
async fn write_file(
    path: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
    rx: &mut StreamReceiver,
) -> Result<bool, FileError> {
    let target = absolute(path)?;
    let wrap = |source| FileError::Write {
        path: path.to_owned(),
        source,
    };
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(wrap(io::Error::from_raw_os_error(libc::EISDIR)));
    };
    tokio::fs::create_dir_all(dir).await.map_err(wrap)?;

    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{}.hearth-{}",
        name.to_string_lossy(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut result = write_temp(&temp, mode, rx).await;
    if let (Ok(true), Some((uid, gid))) = (&result, owner) {
        // Given away before the rename, so the target never has the wrong
        // owner. A chown clears set-id bits, so the mode is set again.
        result = std::os::unix::fs::chown(&temp, Some(uid), Some(gid))
            .and_then(|()| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode)))
            .map(|()| true);
    }
    let done = match result {
        Ok(true) => tokio::fs::rename(&temp, &target).await.map(|()| true),
        other => other,
    };
    if !matches!(done, Ok(true)) {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    let done = done.map_err(wrap)?;

    // Make the rename itself durable.
    if done {
        if let Ok(dir) = tokio::fs::File::open(dir).await {
            let _ = dir.sync_all().await;
        }
    }
    Ok(done)
}

async fn write_temp(temp: &Path, mode: u32, rx: &mut StreamReceiver) -> io::Result<bool> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .await?;
    loop {
        match rx.recv().await {
            Event::Data {
                chan: CHAN_STDIO,
                bytes,
            } => file.write_all(&bytes).await?,
            Event::Eof { chan: CHAN_STDIO } => break,
            Event::Closed { .. } => return Ok(false),
            Event::Data { .. } | Event::Eof { .. } | Event::Control(_) => {}
        }
    }
    file.flush().await?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .await?;
    file.sync_all().await?;
    Ok(true)
}

/// Serves `ReadFile`.
pub async fn read(path: String, stream: Stream) {
    let (tx, _rx) = stream.split();
    let wrap = |source| FileError::Read {
        path: path.clone(),
        source,
    };
    let opened = async {
        let target = absolute(&path)?;
        let file = tokio::fs::File::open(&target).await.map_err(wrap)?;
        let meta = file.metadata().await.map_err(wrap)?;
        if meta.is_dir() {
            return Err(wrap(io::Error::from_raw_os_error(libc::EISDIR)));
        }
        Ok(file)
    };
    let mut file = match opened.await {
        Ok(file) => file,
        Err(err) => return refuse(&tx, &crate::describe(&err)),
    };

    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if tx.data(CHAN_STDIO, &buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(source) => {
                let err = FileError::Read { path, source };
                return refuse(&tx, &crate::describe(&err));
            }
        }
    }
    let _ = tx.eof(CHAN_STDIO);
    answer(
        &tx,
        Control::Ok {
            value: serde_json::Value::Null,
        },
    );
}

fn absolute(path: &str) -> Result<PathBuf, FileError> {
    let target = PathBuf::from(path);
    if !target.is_absolute() {
        return Err(FileError::NotAbsolute(path.to_owned()));
    }
    Ok(target)
}
