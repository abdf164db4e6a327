//! The [`Request`] enum: one decoded request frame.

use crate::code;
use crate::ext::{Alive3Req, PortPlease3Req, Unreg3Req};
use crate::legacy::Alive2Req;
use crate::name::is_lookup_name_ok;

/// Why a request or reply could not be decoded. For requests, every variant
/// means what the C epmd does with it: close the socket without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Fewer bytes than the fixed part of the message.
    #[error("packet too short")]
    TooShort,
    /// An inner length runs past the end of the packet.
    #[error("inner length exceeds the packet")]
    BadLength,
    /// The node name contains a NUL byte.
    #[error("NUL byte in node name")]
    NulInName,
    /// A lookup name that is empty, not UTF-8, or too long.
    #[error("invalid node name in lookup")]
    BadName,
    /// A command (or reply) code this codec does not know.
    #[error("unknown command")]
    UnknownCommand,
    /// Bytes left over in an extension message, whose layouts are exact.
    #[error("trailing bytes after message")]
    TrailingBytes,
    /// A protocol name in a reply that is not UTF-8.
    #[error("invalid protocol name")]
    BadProtocol,
}

/// One decoded request. Borrowed from the frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// ALIVE2_REQ (120).
    Alive2(Alive2Req<'a>),
    /// PORT_PLEASE2_REQ (122), with one trailing NUL stripped.
    PortPlease2(&'a [u8]),
    /// NAMES_REQ (110); trailing bytes ignored.
    Names,
    /// DUMP_REQ (100).
    Dump,
    /// KILL_REQ (107).
    Kill,
    /// STOP_REQ (115): the name up to its first NUL.
    Stop(&'a [u8]),
    /// ALIVE3_REQ (88).
    Alive3(Alive3Req<'a>),
    /// PORT_PLEASE3_REQ (90).
    PortPlease3(PortPlease3Req<'a>),
    /// NAMES3_REQ (78); nothing may follow the command byte.
    Names3,
    /// DUMP3_REQ (68); nothing may follow the command byte.
    Dump3,
    /// UNREG3_REQ (85).
    Unreg3(Unreg3Req<'a>),
}

impl<'a> Request<'a> {
    /// Decodes a frame body (the bytes after the `u16` length; the command
    /// byte first). `body` must not be empty; [`crate::frame::check`] ensures
    /// that.
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let (&cmd, rest) = body.split_first().ok_or(Malformed::TooShort)?;
        match cmd {
            code::ALIVE2_REQ => Alive2Req::decode(body).map(Self::Alive2),
            code::PORT_PLEASE2_REQ => {
                let name = rest.strip_suffix(&[0]).unwrap_or(rest);
                if is_lookup_name_ok(name) {
                    Ok(Self::PortPlease2(name))
                } else {
                    Err(Malformed::BadName)
                }
            }
            code::NAMES_REQ => Ok(Self::Names),
            code::DUMP_REQ => Ok(Self::Dump),
            code::KILL_REQ => Ok(Self::Kill),
            code::STOP_REQ => {
                if rest.is_empty() {
                    return Err(Malformed::TooShort);
                }
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                Ok(Self::Stop(&rest[..end]))
            }
            code::ALIVE3_REQ => Alive3Req::decode(body).map(Self::Alive3),
            code::PORT_PLEASE3_REQ => PortPlease3Req::decode(body).map(Self::PortPlease3),
            // The extension's layouts are exact (docs/protocol.md §2), so
            // unlike NAMES and DUMP a byte after the command is refused.
            code::NAMES3_REQ => exact(rest, Self::Names3),
            code::DUMP3_REQ => exact(rest, Self::Dump3),
            code::UNREG3_REQ => Unreg3Req::decode(body).map(Self::Unreg3),
            _ => Err(Malformed::UnknownCommand),
        }
    }

    /// Whether the C epmd serves this request only to local peers. The
    /// extension's state-changing and debug commands follow the same rule.
    pub fn is_local_only(&self) -> bool {
        matches!(
            self,
            Self::Alive2(_)
                | Self::Dump
                | Self::Kill
                | Self::Stop(_)
                | Self::Alive3(_)
                | Self::Dump3
                | Self::Unreg3(_)
        )
    }
}

fn exact<'a>(rest: &[u8], req: Request<'a>) -> Result<Request<'a>, Malformed> {
    if rest.is_empty() {
        Ok(req)
    } else {
        Err(Malformed::TrailingBytes)
    }
}

/// Whether a command byte is local-only, before the request is decoded.
pub fn is_local_only_code(cmd: u8) -> bool {
    matches!(
        cmd,
        code::ALIVE2_REQ
            | code::DUMP_REQ
            | code::KILL_REQ
            | code::STOP_REQ
            | code::ALIVE3_REQ
            | code::DUMP3_REQ
            | code::UNREG3_REQ
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch() {
        assert_eq!(Request::decode(b"zfoo\0"), Ok(Request::PortPlease2(b"foo")));
        assert_eq!(Request::decode(b"z\0"), Err(Malformed::BadName));
        assert_eq!(Request::decode(b"zfo\0o"), Err(Malformed::BadName));
        assert_eq!(Request::decode(b"nxyz"), Ok(Request::Names));
        assert_eq!(Request::decode(b"sfoo\0bar"), Ok(Request::Stop(b"foo")));
        assert_eq!(Request::decode(b"s"), Err(Malformed::TooShort));
        assert_eq!(Request::decode(b"a"), Err(Malformed::UnknownCommand));
        assert_eq!(Request::decode(b"N"), Ok(Request::Names3));
        assert_eq!(Request::decode(b"N\0"), Err(Malformed::TrailingBytes));
        assert_eq!(Request::decode(b"D"), Ok(Request::Dump3));
        assert_eq!(Request::decode(b"Dx"), Err(Malformed::TrailingBytes));
        assert!(Request::decode(b"d").unwrap().is_local_only());
        assert!(!Request::decode(b"n").unwrap().is_local_only());
        assert!(is_local_only_code(code::ALIVE3_REQ));
        assert!(!is_local_only_code(code::PORT_PLEASE3_REQ));
    }
}
