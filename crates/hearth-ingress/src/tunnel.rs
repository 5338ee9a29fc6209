//! A tunnel stream to a guest port as an ordinary byte stream, so that
//! hyper can speak HTTP over it.
//!
//! The proxy gets one end of an in-memory pipe; a task moves bytes between
//! the other end and the multiplexed stream, counting them. The pipe's
//! buffer and the stream's credit bound what is in flight, so a slow reader
//! on either side slows the writer instead of growing a buffer.

use hearth_protocol::{Event, Stream, CHAN_STDIO};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How many bytes the pipe holds.
const PIPE_BYTES: usize = 64 * 1024;

/// The largest read handed to the stream at once.
const CHUNK: usize = 32 * 1024;

/// Counts the bytes a tunnel carries: `(into the guest, out of it)`.
pub type TrafficSink = Box<dyn Fn(u64, u64) + Send + Sync>;

/// The proxy's end of a pipe whose other end is `stream`.
pub fn bridge(stream: Stream, traffic: TrafficSink) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(pump(stream, theirs, traffic));
    ours
}

/// Moves bytes both ways until the guest ends the stream, or both sides
/// have finished sending.
async fn pump(stream: Stream, io: DuplexStream, traffic: TrafficSink) {
    let (tx, mut rx) = stream.split();
    let (mut reader, mut writer) = tokio::io::split(io);

    let to_guest = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.eof(CHAN_STDIO);
                    return;
                }
                Ok(n) => {
                    traffic(n as u64, 0);
                    if tx.data(CHAN_STDIO, &buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let from_guest = async {
        loop {
            match rx.recv().await {
                Event::Data { bytes, .. } => {
                    traffic(0, bytes.len() as u64);
                    if writer.write_all(&bytes).await.is_err() {
                        return true;
                    }
                }
                Event::Eof { .. } => {
                    let _ = writer.shutdown().await;
                }
                Event::Control(_) => {}
                Event::Closed { .. } => {
                    let _ = writer.shutdown().await;
                    return true;
                }
            }
        }
    };

    // The guest's side ending ends the tunnel; the proxy's side ending only
    // half-closes it, since the answer may still be on its way.
    tokio::pin!(to_guest, from_guest);
    let mut sent_all = false;
    loop {
        tokio::select! {
            () = &mut to_guest, if !sent_all => sent_all = true,
            _ = &mut from_guest => break,
        }
    }
    tx.close(None);
}
