//! The virtio-serial port that carries the host ↔ agent channel.
//!
//! The port is found by name under `/sys/class/virtio-ports/*/name`; its device
//! node is `/dev/<directory name>`. It can be opened only once, so the agent
//! opens it once, read-write, and keeps it for its whole life.
//!
//! Two threads move the bytes, blocking in `poll(2)`, and hand them to the
//! async side through bounded channels. The port's readiness does not fit an
//! edge-triggered reactor: while the host is away the port reports a hang-up
//! (which tokio keeps as a final state) and reads end-of-file at once.
//!
//! The guest learns that a host connected on a control queue, handled later
//! than the data queue, so a new host's first bytes can arrive while the port
//! still reads as hung up. Both threads therefore give a hang-up a grace
//! period before they believe it:
//!
//! - The reader delivers data, and one end-of-file per outage once the port
//!   has read end-of-file for [`AWAY_GRACE`]. Meanwhile it retries every
//!   [`IDLE_FIRST`]–[`IDLE_MAX`] instead of spinning.
//! - The writer waits up to [`CONNECT_GRACE`] for a host to be connected.
//!   Past that it drops what it holds, and drops at once until a host is
//!   back. Once the reader has reported the outage, writes fail, so a session
//!   never waits on a host that left.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// First pause after the port reads end-of-file.
pub const IDLE_FIRST: Duration = Duration::from_millis(20);

/// Longest pause between reads while no host is connected.
pub const IDLE_MAX: Duration = Duration::from_millis(50);

/// How long the port must read end-of-file before the host counts as gone.
pub const AWAY_GRACE: Duration = Duration::from_millis(200);

/// How long a write waits for a host to be connected.
pub const CONNECT_GRACE: Duration = Duration::from_secs(1);

/// Chunks queued in each direction.
const QUEUE: usize = 8;

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
    /// The device node could not be opened.
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

/// Opens the port once and starts its reader and writer.
///
/// # Errors
///
/// Fails when the node cannot be opened (a second open is `EBUSY`).
pub fn open(path: &Path) -> Result<(PortReader, PortWriter), PortError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| PortError::Open {
            path: path.to_owned(),
            source,
        })?;
    Ok(start(OwnedFd::from(file)))
}

/// Serves an open, non-blocking descriptor as the port.
pub fn start(fd: OwnedFd) -> (PortReader, PortWriter) {
    let fd = Arc::new(fd);
    let away = Arc::new(AtomicBool::new(false));

    let (in_tx, in_rx) = mpsc::channel(QUEUE);
    let (out_tx, out_rx) = mpsc::channel(QUEUE);
    let (reader_fd, reader_away) = (fd.clone(), away.clone());
    std::thread::Builder::new()
        .name("port-read".to_owned())
        .spawn(move || read_thread(&reader_fd, &in_tx, &reader_away))
        .expect("the port threads start at boot, when threads are plentiful");
    std::thread::Builder::new()
        .name("port-write".to_owned())
        .spawn(move || write_thread(&fd, out_rx))
        .expect("the port threads start at boot, when threads are plentiful");

    let reader = PortReader {
        rx: in_rx,
        pending: Bytes::new(),
    };
    let writer = PortWriter {
        tx: PollSender::new(out_tx),
        away,
    };
    (reader, writer)
}

/// What the reader thread hands over.
enum Incoming {
    Data(Bytes),
    Eof,
}

/// Waits until `fd` is ready for `events` (or hung up) and returns what it
/// reported; `timeout` of `None` waits for ever.
fn wait(fd: &OwnedFd, events: PollFlags, timeout: Option<Duration>) -> PollFlags {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
    };
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    match poll(&mut fds, timeout) {
        Ok(_) => fds[0].revents().unwrap_or(PollFlags::empty()),
        Err(_) => PollFlags::empty(),
    }
}

fn read_thread(fd: &OwnedFd, tx: &mpsc::Sender<Incoming>, away: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle = IDLE_FIRST;
    let mut away_since: Option<Instant> = None;
    let mut reported = false;
    loop {
        wait(fd, PollFlags::POLLIN, None);
        let incoming = match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(fd), &mut buf) {
            Ok(0) => {
                let since = *away_since.get_or_insert_with(Instant::now);
                std::thread::sleep(idle);
                idle = (idle * 2).min(IDLE_MAX);
                if reported || since.elapsed() < AWAY_GRACE {
                    continue;
                }
                reported = true;
                away.store(true, Ordering::SeqCst);
                Incoming::Eof
            }
            Ok(n) => {
                away_since = None;
                reported = false;
                idle = IDLE_FIRST;
                away.store(false, Ordering::SeqCst);
                Incoming::Data(Bytes::copy_from_slice(&buf[..n]))
            }
            // Nothing to read: a host is connected.
            Err(Errno::EAGAIN) => {
                away_since = None;
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(_) => {
                std::thread::sleep(IDLE_MAX);
                continue;
            }
        };
        if tx.blocking_send(incoming).is_err() {
            return;
        }
    }
}

fn write_thread(fd: &OwnedFd, mut rx: mpsc::Receiver<Bytes>) {
    // Set once a hang-up outlasted the grace; cleared when the port is
    // writable again.
    let mut gave_up = false;
    while let Some(mut chunk) = rx.blocking_recv() {
        let mut hung_up_since = None;
        while !chunk.is_empty() {
            let revents = wait(fd, PollFlags::POLLOUT, Some(IDLE_MAX));
            if revents.contains(PollFlags::POLLHUP) && !revents.contains(PollFlags::POLLOUT) {
                let since = *hung_up_since.get_or_insert_with(Instant::now);
                if gave_up || since.elapsed() >= CONNECT_GRACE {
                    // The host left: drop what it will never read.
                    gave_up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            gave_up = false;
            match nix::unistd::write(fd, &chunk) {
                Ok(n) => chunk.advance(n),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
}

/// The reading half: data as it comes, and end-of-file once per outage.
pub struct PortReader {
    rx: mpsc::Receiver<Incoming>,
    pending: Bytes,
}

impl AsyncRead for PortReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Incoming::Data(bytes)) => self.pending = bytes,
                Some(Incoming::Eof) => return Poll::Ready(Ok(())),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// The writing half: queues data for the writer thread; fails while the host
/// is away.
pub struct PortWriter {
    tx: PollSender<Bytes>,
    away: Arc<AtomicBool>,
}

impl PortWriter {
    fn gone() -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the host side of the port is not connected",
        )
    }
}

impl AsyncWrite for PortWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.away.load(Ordering::SeqCst) {
            return Poll::Ready(Err(PortWriter::gone()));
        }
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(PortWriter::gone()));
        }
        if self.tx.send_item(Bytes::copy_from_slice(buf)).is_err() {
            return Poll::Ready(Err(PortWriter::gone()));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer thread writes queued data in order, as fast as the port
        // takes it.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    #[tokio::test]
    async fn bytes_flow_both_ways_and_a_gone_host_reads_eof_once() {
        let (guest, mut host) = UnixStream::pair().expect("pair");
        guest.set_nonblocking(true).expect("nonblocking");
        let (mut reader, mut writer) = start(OwnedFd::from(guest));

        host.write_all(b"hello").expect("host writes");
        let mut got = [0u8; 5];
        reader.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");

        writer.write_all(b"world").await.expect("write");
        host.read_exact(&mut got).expect("host reads");
        assert_eq!(&got, b"world");

        drop(host);
        assert_eq!(reader.read(&mut got).await.expect("eof"), 0);
        let again = tokio::time::timeout(Duration::from_millis(200), reader.read(&mut got)).await;
        assert!(again.is_err(), "a second end-of-file for the same outage");
        assert!(writer.write_all(b"lost").await.is_err());
    }
}
