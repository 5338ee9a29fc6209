//! Asynchronous reads and writes on a pseudo-terminal master.
//!
//! tokio has no type for a terminal, so the master is made non-blocking and
//! registered with the reactor through [`AsyncFd`]; a reader and a writer
//! share the descriptor. A master reads `EIO` once every slave is closed,
//! which is its end-of-file.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The reading half.
pub struct FdReader {
    fd: Arc<AsyncFd<OwnedFd>>,
}

/// The writing half.
#[derive(Clone)]
pub struct FdWriter {
    fd: Arc<AsyncFd<OwnedFd>>,
}

/// Makes `fd` non-blocking, registers it with the reactor and splits it.
///
/// # Errors
///
/// Fails when the descriptor cannot be made non-blocking or registered.
pub fn split(fd: OwnedFd) -> io::Result<(FdReader, FdWriter)> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let fd = Arc::new(crate::sys::register(fd)?);
    Ok((FdReader { fd: fd.clone() }, FdWriter { fd }))
}

impl FdWriter {
    /// The descriptor, for ioctls such as a terminal resize.
    pub fn fd(&self) -> &OwnedFd {
        self.fd.get_ref()
    }
}

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let result = guard
                .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), unfilled).map_err(io::Error::from));
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let result =
                guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(io::Error::from));
            if let Ok(result) = result {
                return Poll::Ready(result);
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_socket_pair_carries_bytes_both_ways() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (mut a_read, mut a_write) = split(OwnedFd::from(a)).expect("split");
        let (mut b_read, mut b_write) = split(OwnedFd::from(b)).expect("split");

        a_write.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        b_read.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");

        b_write.write_all(b"pong").await.expect("write");
        a_read.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"pong");
    }
}
