//! The wire frame: a 12-byte header and a payload.
//!
//! ```text
//! magic u16 | kind u8 | chan u8 | stream u32 | len u32 | payload[len]
//! ```
//!
//! All integers are big-endian. The decoder can run in *resync* mode, where it
//! skips bytes until it finds the header of a `Hello` or `HelloAck` frame; a
//! fresh session uses it to discard whatever a previous session left in flight.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The two bytes every frame starts with.
pub const MAGIC: u16 = 0x4854;

/// Length of the frame header.
pub const HEADER_LEN: usize = 12;

/// Largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Largest data chunk a sender puts in one frame.
pub const MAX_CHUNK: usize = 32 * 1024;

/// What a frame means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Starts a session; payload is a JSON [`crate::Hello`].
    Hello = 1,
    /// Answers `Hello`; payload is a JSON [`crate::HelloAck`].
    HelloAck = 2,
    /// Opens a stream; payload is the JSON request.
    Open = 3,
    /// Bytes on channel `chan` of a stream.
    Data = 4,
    /// The sender will send no more on channel `chan`.
    Eof = 5,
    /// A JSON [`crate::Control`] message on a stream.
    Control = 6,
    /// The stream is finished; payload is an optional UTF-8 reason.
    Close = 7,
    /// The receiver consumed bytes; payload is a u32 credit for the sender.
    Window = 8,
    /// The host asks the guest to stop the session at a frame boundary.
    Freeze = 9,
    /// The guest has stopped writing; the session is over.
    Frozen = 10,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::HelloAck,
            3 => Kind::Open,
            4 => Kind::Data,
            5 => Kind::Eof,
            6 => Kind::Control,
            7 => Kind::Close,
            8 => Kind::Window,
            9 => Kind::Freeze,
            10 => Kind::Frozen,
            _ => return None,
        })
    }
}

/// One frame of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame means.
    pub kind: Kind,
    /// The data channel (0 = stdin/stdout, 1 = stderr) for `Data` and `Eof`.
    pub chan: u8,
    /// The stream the frame belongs to (0 for session frames).
    pub stream: u32,
    /// The payload.
    pub payload: Bytes,
}

impl Frame {
    /// A frame without payload.
    pub fn empty(kind: Kind, stream: u32) -> Frame {
        Frame {
            kind,
            chan: 0,
            stream,
            payload: Bytes::new(),
        }
    }
}

/// Errors decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a frame header.
    #[error("bad frame header (magic {magic:#06x}, kind {kind})")]
    BadHeader {
        /// The two bytes found where the magic belongs.
        magic: u16,
        /// The kind byte.
        kind: u8,
    },
    /// A frame announced a payload above [`MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The underlying channel failed.
    #[error("channel i/o")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes [`Frame`]s.
#[derive(Debug, Default)]
pub struct FrameCodec {
    resync: bool,
}

impl FrameCodec {
    /// A codec that first skips bytes until a `Hello` or `HelloAck` header.
    pub fn resyncing() -> FrameCodec {
        FrameCodec { resync: true }
    }

    /// Makes the decoder skip to the next `Hello` or `HelloAck` header.
    pub fn set_resync(&mut self) {
        self.resync = true;
    }

    fn skip_to_handshake(&mut self, src: &mut BytesMut) -> bool {
        let magic = MAGIC.to_be_bytes();
        let mut i = 0;
        while i + 3 <= src.len() {
            let kind = src[i + 2];
            let is_handshake = kind == Kind::Hello as u8 || kind == Kind::HelloAck as u8;
            if src[i] == magic[0] && src[i + 1] == magic[1] && is_handshake {
                src.advance(i);
                self.resync = false;
                return true;
            }
            i += 1;
        }

        // Keep the last two bytes: they may start a header.
        let keep = src.len().min(2);
        src.advance(src.len() - keep);
        false
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if self.resync && !self.skip_to_handshake(src) {
            return Ok(None);
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }

        let magic = u16::from_be_bytes([src[0], src[1]]);
        let kind_byte = src[2];
        let kind = match Kind::from_u8(kind_byte) {
            Some(kind) if magic == MAGIC => kind,
            _ => {
                return Err(FrameError::BadHeader {
                    magic,
                    kind: kind_byte,
                })
            }
        };
        let chan = src[3];
        let stream = u32::from_be_bytes([src[4], src[5], src[6], src[7]]);
        let len = u32::from_be_bytes([src[8], src[9], src[10], src[11]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }

        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        Ok(Some(Frame {
            kind,
            chan,
            stream,
            payload,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        if frame.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(frame.payload.len()));
        }
        dst.reserve(HEADER_LEN + frame.payload.len());
        dst.put_u16(MAGIC);
        dst.put_u8(frame.kind as u8);
        dst.put_u8(frame.chan);
        dst.put_u32(frame.stream);
        dst.put_u32(frame.payload.len() as u32);
        dst.put_slice(&frame.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: Frame) -> BytesMut {
        let mut buf = BytesMut::new();
        FrameCodec::default()
            .encode(frame, &mut buf)
            .expect("encode");
        buf
    }

    #[test]
    fn frame_round_trips() {
        let frame = Frame {
            kind: Kind::Data,
            chan: 1,
            stream: 7,
            payload: Bytes::from("hi"),
        };
        let mut buf = encode(frame.clone());
        let decoded = FrameCodec::default().decode(&mut buf).expect("decode");
        assert_eq!(decoded, Some(frame));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frame_waits_for_more() {
        let frame = Frame {
            kind: Kind::Data,
            chan: 0,
            stream: 1,
            payload: Bytes::from("abc"),
        };
        let full = encode(frame.clone());
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&full[..HEADER_LEN + 1]);
        assert_eq!(codec.decode(&mut buf).expect("decode"), None);
        buf.extend_from_slice(&full[HEADER_LEN + 1..]);
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(frame));
    }

    #[test]
    fn garbage_is_an_error_unless_resyncing() {
        let hello = Frame {
            kind: Kind::Hello,
            chan: 0,
            stream: 0,
            payload: Bytes::from("{}"),
        };
        let mut buf = BytesMut::from(&b"\x00garbage\x48"[..]);
        buf.extend_from_slice(&encode(hello.clone()));

        assert!(FrameCodec::default().decode(&mut buf.clone()).is_err());
        let decoded = FrameCodec::resyncing().decode(&mut buf).expect("decode");
        assert_eq!(decoded, Some(hello));
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut buf = BytesMut::new();
        buf.put_u16(MAGIC);
        buf.put_u8(Kind::Data as u8);
        buf.put_u8(0);
        buf.put_u32(1);
        buf.put_u32(u32::MAX);
        assert!(matches!(
            FrameCodec::default().decode(&mut buf),
            Err(FrameError::TooLarge(_))
        ));
    }
}
