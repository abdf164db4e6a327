//! Request framing: a `u16` length (not counting itself), then that many bytes.
//!
//! The C epmd accepts a declared length of 1..=3057 and closes the socket,
//! without a reply, on anything else. It also closes when more bytes than one
//! frame have arrived, which is how a pipelined second request ends; that rule
//! needs the read history, so the daemon applies it, not this module.

use crate::limits::MAX_PACKET;

/// Why a frame header was refused. Every variant means "close, no reply".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The declared length is zero.
    #[error("zero-length packet")]
    Empty,
    /// The declared length is above 3057.
    #[error("packet length {0} exceeds {MAX_PACKET}")]
    TooLarge(usize),
}

/// Checks whether `buf` holds a complete frame.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(len))` when the
/// frame body is `buf[2..2 + len]`, or an error when the header is invalid.
pub fn check(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(hdr) = buf.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hdr[0], hdr[1]]));
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_PACKET {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    Ok(Some(len))
}

/// Wraps a request body (command byte first) in the `u16` length header.
///
/// # Panics
/// Panics if `body` is longer than `u16::MAX`; callers build bodies from
/// bounded fields.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("request body fits in u16");
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A bounds-checked big-endian reader over a byte slice: every read returns
/// `None` rather than panicking when the slice is too short. Shared by both
/// wire codecs (this crate and `dist-proto`).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N).and_then(|b| b.try_into().ok())
    }

    /// The next byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.array().map(u8::from_be_bytes)
    }

    /// The next big-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// The next big-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// The next big-endian `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_header_and_body() {
        assert_eq!(check(&[]), Ok(None));
        assert_eq!(check(&[0]), Ok(None));
        assert_eq!(check(&[0, 3, 1, 2]), Ok(None));
        assert_eq!(check(&[0, 3, 1, 2, 3]), Ok(Some(3)));
    }

    #[test]
    fn limits() {
        assert_eq!(check(&[0, 0]), Err(FrameError::Empty));
        let max = (MAX_PACKET as u16).to_be_bytes();
        assert_eq!(check(&max), Ok(None));
        let over = (MAX_PACKET as u16 + 1).to_be_bytes();
        assert_eq!(check(&over), Err(FrameError::TooLarge(MAX_PACKET + 1)));
        assert_eq!(
            check(&63000u16.to_be_bytes()),
            Err(FrameError::TooLarge(63000))
        );
    }
}
