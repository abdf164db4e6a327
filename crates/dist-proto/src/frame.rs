//! Handshake framing: a big-endian length prefix, then that many bytes.
//!
//! Over TCP and Unix sockets the handshake uses a `u16` prefix (`{packet,2}`)
//! and switches to `u32` once the connection is up. Inside TLS, OTP forces
//! `{packet,4}` from the start, so every handshake message has a `u32`
//! prefix; a client that sends `u16` frames there is misread by OTP. This is
//! why [`Framing`] is part of the handshake configuration.
//!
//! Decoding is check-then-parse: [`take_frame`] only says where the next
//! complete message is; the [`message`](crate::message) decoders look inside.
//! Nothing is trusted before the peer has proved it knows the cookie, so
//! every frame is bounded by [`MAX_HANDSHAKE_MESSAGE`].

use std::ops::Range;

use crate::HandshakeError;

/// The largest handshake message accepted or sent, in bytes (excluding the
/// length prefix). The largest legal message is an `'N'` with a node name of
/// at most 255 characters (1020 bytes of UTF-8), well under this.
pub const MAX_HANDSHAKE_MESSAGE: usize = 2048;

/// The length prefix of handshake messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Framing {
    /// A `u16` prefix: plain TCP and Unix-domain sockets.
    U16,
    /// A `u32` prefix: inside TLS (`inet_tls_dist`).
    U32,
}

impl Framing {
    /// The size of the length prefix in bytes.
    pub const fn header_len(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }
}

/// Finds the next complete frame at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or
/// `Ok(Some((body, consumed)))` where `buf[body]` is the message (tag byte
/// first) and `consumed` is the number of bytes the frame takes, prefix
/// included. A declared length above [`MAX_HANDSHAKE_MESSAGE`] is
/// [`HandshakeError::FrameTooLarge`] as soon as the prefix is in, without
/// waiting for (or buffering) the body. A zero length is returned as an empty
/// body; no handshake message is empty, so the caller's decoder rejects it.
pub fn take_frame(
    buf: &[u8],
    framing: Framing,
) -> Result<Option<(Range<usize>, usize)>, HandshakeError> {
    let hdr = framing.header_len();
    let Some(prefix) = buf.get(..hdr) else {
        return Ok(None);
    };
    // Widen before comparing, so a u32 length cannot wrap on 32-bit targets.
    let len = prefix
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if len > MAX_HANDSHAKE_MESSAGE as u64 {
        return Err(HandshakeError::FrameTooLarge {
            len,
            max: MAX_HANDSHAKE_MESSAGE,
        });
    }
    // Cannot truncate: len <= MAX_HANDSHAKE_MESSAGE.
    let len = len as usize;
    if buf.len() - hdr < len {
        return Ok(None);
    }
    Ok(Some((hdr..hdr + len, hdr + len)))
}

/// Prefixes a message body with its length.
///
/// # Panics
/// Panics if `body` is longer than [`MAX_HANDSHAKE_MESSAGE`]; every body this
/// crate builds is bounded by validated fields (see
/// [`HandshakeConfig::validate`](crate::HandshakeConfig::validate)).
pub fn encode_frame(body: &[u8], framing: Framing) -> Vec<u8> {
    assert!(
        body.len() <= MAX_HANDSHAKE_MESSAGE,
        "handshake message of {} bytes exceeds {MAX_HANDSHAKE_MESSAGE}",
        body.len()
    );
    let mut out = Vec::with_capacity(framing.header_len() + body.len());
    match framing {
        // Both casts are lossless: body.len() <= 2048.
        Framing::U16 => out.extend_from_slice(&(body.len() as u16).to_be_bytes()),
        Framing::U32 => out.extend_from_slice(&(body.len() as u32).to_be_bytes()),
    }
    out.extend_from_slice(body);
    out
}

/// The bounds-checked big-endian reader over a message body, shared with
/// the EPMD codec.
pub(crate) use epmd_proto::frame::Reader;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_and_complete() {
        for f in [Framing::U16, Framing::U32] {
            let framed = encode_frame(b"sok", f);
            let h = f.header_len();
            for cut in 0..framed.len() {
                assert_eq!(take_frame(&framed[..cut], f), Ok(None), "{f:?} cut {cut}");
            }
            let mut more = framed.clone();
            more.extend_from_slice(b"next");
            assert_eq!(take_frame(&more, f), Ok(Some((h..h + 3, h + 3))));
        }
    }

    #[test]
    fn u16_and_u32_prefixes() {
        assert_eq!(encode_frame(b"ab", Framing::U16), [0, 2, b'a', b'b']);
        assert_eq!(encode_frame(b"ab", Framing::U32), [0, 0, 0, 2, b'a', b'b']);
        // A u16 frame read as u32 declares a huge length: the TLS trap.
        let misread = take_frame(&[0, 5, b's', b'o', b'k', 0, 0], Framing::U32);
        assert!(matches!(misread, Err(HandshakeError::FrameTooLarge { .. })));
    }

    #[test]
    fn limits() {
        let max = MAX_HANDSHAKE_MESSAGE as u16;
        assert_eq!(take_frame(&max.to_be_bytes(), Framing::U16), Ok(None));
        assert_eq!(
            take_frame(&(max + 1).to_be_bytes(), Framing::U16),
            Err(HandshakeError::FrameTooLarge {
                len: u64::from(max) + 1,
                max: MAX_HANDSHAKE_MESSAGE
            })
        );
        assert!(take_frame(&[0xff; 4], Framing::U32).is_err());
        assert_eq!(take_frame(&[0, 0], Framing::U16), Ok(Some((2..2, 2))));
    }
}
