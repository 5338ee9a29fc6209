//! The app's captured output: a ring buffer of tagged chunks plus followers.
//!
//! Chunks carry the data channel they came from (stdout or stderr) and a
//! sequence number. The buffer keeps roughly the last [`CAPACITY`] bytes; a
//! reader asks for everything from a sequence number on and gets back the next
//! number to ask for, so a follower that fell behind the buffer's start simply
//! resumes at the oldest chunk kept.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

/// Bytes of output kept.
pub const CAPACITY: usize = 4 << 20;

/// What a reader gets: chunks from its cursor on.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    /// `(channel, bytes)` in order.
    pub chunks: Vec<(u8, Bytes)>,
    /// The cursor for the next read.
    pub next: u64,
    /// The output has ended (the app's pipes closed) and nothing follows.
    pub ended: bool,
}

/// The app's output buffer.
pub struct LogBuffer {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    chunks: VecDeque<(u64, u8, Bytes)>,
    bytes: usize,
    next_seq: u64,
    ended: bool,
}

impl Default for LogBuffer {
    fn default() -> LogBuffer {
        LogBuffer::new(CAPACITY)
    }
}

impl LogBuffer {
    /// An empty buffer keeping about `capacity` bytes; its output has not
    /// started, so followers wait.
    pub fn new(capacity: usize) -> LogBuffer {
        LogBuffer {
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("the log lock is never held across a panic")
    }

    /// Appends a chunk, dropping the oldest chunks beyond the capacity.
    pub fn push(&self, chan: u8, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let bytes = if bytes.len() > self.capacity {
            bytes.slice(bytes.len() - self.capacity..)
        } else {
            bytes
        };

        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.bytes += bytes.len();
        inner.chunks.push_back((seq, chan, bytes));
        while inner.bytes > self.capacity {
            let (_, _, old) = inner.chunks.pop_front().expect("bytes > 0 means a chunk");
            inner.bytes -= old.len();
        }
        drop(inner);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Marks the output finished (`ended`) or started again.
    pub fn set_ended(&self, ended: bool) {
        self.lock().ended = ended;
        self.changed.send_modify(|v| *v += 1);
    }

    /// Everything from `cursor` on (from the oldest kept chunk when `cursor`
    /// is older).
    pub fn read_from(&self, cursor: u64) -> Batch {
        let inner = self.lock();
        let chunks = inner
            .chunks
            .iter()
            .filter(|(seq, _, _)| *seq >= cursor)
            .map(|(_, chan, bytes)| (*chan, bytes.clone()))
            .collect();
        Batch {
            chunks,
            next: inner.next_seq,
            ended: inner.ended,
        }
    }

    /// A receiver that changes whenever the buffer does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Bytes currently kept.
    #[cfg(test)]
    pub fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_their_channel_and_order() {
        let buf = LogBuffer::new(1024);
        buf.push(0, Bytes::from("out"));
        buf.push(1, Bytes::from("err"));
        let batch = buf.read_from(0);
        assert_eq!(
            batch.chunks,
            vec![(0, Bytes::from("out")), (1, Bytes::from("err"))]
        );
        assert_eq!(batch.next, 2);
        assert!(buf.read_from(batch.next).chunks.is_empty());
    }

    #[test]
    fn old_output_is_dropped_beyond_the_capacity() {
        let buf = LogBuffer::new(10);
        for i in 0..5u8 {
            buf.push(0, Bytes::from(vec![b'a' + i; 4]));
        }
        assert!(buf.kept_bytes() <= 10);
        let batch = buf.read_from(0);
        assert_eq!(batch.chunks.len(), 2);
        assert_eq!(batch.chunks[1].1, Bytes::from("eeee"));
        assert_eq!(batch.next, 5);
    }

    #[test]
    fn one_huge_chunk_keeps_its_tail() {
        let buf = LogBuffer::new(4);
        buf.push(1, Bytes::from("abcdefgh"));
        assert_eq!(buf.read_from(0).chunks, vec![(1, Bytes::from("efgh"))]);
    }

    #[tokio::test]
    async fn followers_wake_on_new_output_and_on_the_end() {
        let buf = std::sync::Arc::new(LogBuffer::new(1024));
        let mut changes = buf.subscribe();
        changes.borrow_and_update();

        let writer = buf.clone();
        tokio::spawn(async move {
            writer.push(0, Bytes::from("late"));
            writer.set_ended(true);
        });
        changes.changed().await.expect("changed");
        let batch = buf.read_from(0);
        assert_eq!(batch.chunks.len(), 1);
    }
}
