//! `u32` frame splitting after the handshake.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::{PacketError, MAX_PACKET};

/// Bytes of the length prefix.
const HEADER: usize = 4;

/// Room kept free at the end of the buffer for the next read.
const MIN_SPARE: usize = 16 << 10;

/// How much the buffer grows when it runs short of room.
const GROW: usize = 64 << 10;

/// Finds the next complete frame at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or
/// `Ok(Some((body, consumed)))` where `buf[body]` is the frame body (empty
/// for a tick) and `consumed` the bytes the frame takes, prefix included.
/// A declared length above `max` is [`PacketError::TooLarge`] as soon as
/// the prefix is in, before any of the body is buffered.
pub fn take_frame(buf: &[u8], max: usize) -> Result<Option<(Range<usize>, usize)>, PacketError> {
    let Some(prefix) = buf.get(..HEADER) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    // Widen before comparing, so the check cannot wrap on 16-bit targets.
    if u64::from(len) > max as u64 {
        return Err(PacketError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    // Cannot truncate: len <= max, a usize.
    let len = len as usize;
    if buf.len() - HEADER < len {
        return Ok(None);
    }
    Ok(Some((HEADER..HEADER + len, HEADER + len)))
}

/// One frame taken from a [`Framer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An empty frame: the peer is alive and has nothing to say.
    Tick,
    /// A non-empty frame body, for [`decode_bytes`](super::decode_bytes):
    /// split off the framer's buffer, not copied, so the binaries decoded
    /// from it can be slices of it.
    Packet(Bytes),
}

/// Splits the byte stream of an established connection into frames.
///
/// Bytes go in through [`handle_input`](Self::handle_input), or, to read
/// from a socket without a copy, straight into [`read_buf`](Self::read_buf);
/// frames come out of [`poll_frame`](Self::poll_frame), split off the
/// buffer without a copy (a frame keeps the block it was read into alive
/// while any of it is referenced; the next reads go to a fresh block). A frame whose prefix declares more than the limit fails at once
/// (and keeps failing: the stream cannot be resynchronised), so the buffer
/// never holds more than one frame of at most the limit plus one read.
#[derive(Debug)]
pub struct Framer {
    /// The bytes not yet returned as frames.
    buf: BytesMut,
    max: usize,
    /// Bytes the incomplete frame at `start` still needs, if known.
    need: usize,
}

impl Framer {
    /// A framer with [`MAX_PACKET`] as its limit, starting with `leftover`
    /// (the bytes that arrived with the last handshake message,
    /// [`Established::leftover`](crate::Established::leftover)).
    pub fn new(leftover: Vec<u8>) -> Self {
        Self {
            buf: BytesMut::from(&leftover[..]),
            max: MAX_PACKET,
            need: 0,
        }
    }

    /// Sets the largest frame body accepted.
    pub fn with_max_packet(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Appends bytes read from the stream.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to append the next read to (as `tokio`'s `read_buf`
    /// does), with room for at least the rest of an incomplete frame or
    /// 16 KiB. Only appending is meaningful: the framer owns what is
    /// already there.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        let spare = self.buf.capacity() - self.buf.len();
        if self.need > spare {
            // The whole frame at once, not in doublings.
            self.buf.reserve(self.need);
        } else if spare < MIN_SPARE {
            self.buf.reserve(GROW);
        }
        &mut self.buf
    }

    /// Bytes buffered that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, if one is buffered.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, PacketError> {
        let avail = &self.buf[..];
        match take_frame(avail, self.max)? {
            None => {
                self.need = match avail.get(..HEADER) {
                    Some(p) => {
                        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                        HEADER + len - avail.len()
                    }
                    None => 0,
                };
                Ok(None)
            }
            Some((body, consumed)) => {
                self.need = 0;
                let frame = self.buf.split_to(consumed);
                Ok(Some(if body.is_empty() {
                    Frame::Tick
                } else {
                    Frame::Packet(frame.freeze().slice(body))
                }))
            }
        }
    }
}
