//! Reading a VM's serial console log, which QEMU appends to a file.
//!
//! The log is the only window into a guest before its agent answers, so the
//! accelerator probe and the tests wait on it for markers.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiter looks at the log again.
const POLL: Duration = Duration::from_millis(20);

/// Errors of console waits.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The marker did not appear in time.
    #[error("{marker:?} did not appear in {path} within {timeout:?}")]
    Timeout {
        /// The console log.
        path: PathBuf,
        /// What was awaited.
        marker: String,
        /// How long the wait lasted.
        timeout: Duration,
    },
}

/// Waits until `marker` appears in the log at `path`, reading only what was
/// appended since the last look. A missing file counts as empty.
///
/// # Errors
///
/// [`ConsoleError::Timeout`] when the marker is not there within `timeout`.
pub async fn wait_for(path: &Path, marker: &str, timeout: Duration) -> Result<(), ConsoleError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut offset = 0u64;
    // The end of what was read last, so that a marker split across two reads
    // is still found.
    let mut carry = String::new();

    loop {
        let (chunk, next) = read_from(path, offset);
        offset = next;
        carry.push_str(&chunk);
        if carry.contains(marker) {
            return Ok(());
        }
        let keep = carry.len().saturating_sub(marker.len());
        let keep = (keep..=carry.len())
            .find(|i| carry.is_char_boundary(*i))
            .unwrap_or(0);
        carry.drain(..keep);

        if tokio::time::Instant::now() >= deadline {
            return Err(ConsoleError::Timeout {
                path: path.to_owned(),
                marker: marker.to_owned(),
                timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The bytes after `offset` (lossily decoded) and the new offset.
fn read_from(path: &Path, offset: u64) -> (String, u64) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (String::new(), offset);
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return (String::new(), offset);
    }
    let mut bytes = Vec::new();
    let read = file.read_to_end(&mut bytes).unwrap_or(0);
    (
        String::from_utf8_lossy(&bytes).into_owned(),
        offset + read as u64,
    )
}

/// The last `lines` non-empty lines of the log, joined by ` | `; empty when
/// the file cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut last: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(lines)
        .collect();
    last.reverse();
    last.join(" | ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn marker_split_across_writes_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"boot... Run /in").unwrap();

        let waiter = tokio::spawn({
            let path = path.clone();
            async move { wait_for(&path, "Run /init as", Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        file.write_all(b"it as init process\n").unwrap();
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn absent_marker_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.log");
        let err = wait_for(&path, "x", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not appear"), "{err}");
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(&path, "a\n\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b | c");
    }
}
