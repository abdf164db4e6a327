//! The handshake messages, as message bodies (tag byte first, no length
//! prefix; see [`frame`](crate::frame) for that).
//!
//! `'N'` means two different layouts depending on the direction (send_name
//! from the initiator, challenge from the acceptor), so each message has its
//! own decoder and the state machines pick the one the current step expects.
//!
//! Leniency follows OTP 25's `dist_util`: bytes after the name in `'N'`
//! messages and after `named:` are ignored (later OTP releases may append
//! fields there), while `'c'`, `'r'` and `'a'` must have their exact length.

use crate::frame::Reader;
use crate::HandshakeError;

/// Message tags (the first byte of a handshake message).
pub mod tag {
    /// `'N'`: version 6 send_name (initiator) or challenge (acceptor).
    pub const NEW: u8 = b'N';
    /// `'n'`: version 5 send_name, from OTP 23/24 nodes that believe the
    /// peer is version 5. (OTP 25.2.3 was seen sending `'N'` even then.)
    pub const OLD_NAME: u8 = b'n';
    /// `'s'`: a status, or the initiator's answer to `alive`.
    pub const STATUS: u8 = b's';
    /// `'c'`: the complement that follows an old `'n'` send_name.
    pub const COMPLEMENT: u8 = b'c';
    /// `'r'`: challenge_reply.
    pub const REPLY: u8 = b'r';
    /// `'a'`: challenge_ack.
    pub const ACK: u8 = b'a';
}

/// The distribution version the old `'n'` send_name carries.
pub const OLD_VERSION: u16 = 5;

/// The longest node name accepted or sent, in bytes: 255 characters of
/// UTF-8 at most 4 bytes each, OTP's atom limit (as `MAXSYMLEN` in epmd).
pub const MAX_NAME_BYTES: usize = 1020;

/// Version 6 send_name: `'N' | Flags u64 | Creation u32 | Nlen u16 | Name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendName<'a> {
    /// The initiator's flags.
    pub flags: u64,
    /// The initiator's creation.
    pub creation: u32,
    /// The initiator's full name, or only its host with NAME_ME.
    pub name: &'a [u8],
}

impl<'a> SendName<'a> {
    /// Encodes the body.
    ///
    /// # Panics
    /// Panics if `name` is longer than `u16::MAX`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(17 + self.name.len());
        b.push(tag::NEW);
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&self.creation.to_be_bytes());
        put_name16(&mut b, self.name);
        b
    }

    /// Decodes a body whose tag is `'N'`; bytes after Name are ignored.
    pub fn decode(body: &'a [u8]) -> Result<Self, HandshakeError> {
        let mut r = tagged(body, tag::NEW)?;
        let flags = r.u64().ok_or(short("send_name too short"))?;
        let creation = r.u32().ok_or(short("send_name too short"))?;
        let name = take_name16(&mut r, "send_name too short")?;
        Ok(Self {
            flags,
            creation,
            name,
        })
    }
}

/// Version 5 send_name: `'n' | Version u16 | Flags u32 | Name` (the rest of
/// the message). Followed by a [`Complement`] once the challenge is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldSendName<'a> {
    /// The distribution version; must be [`OLD_VERSION`].
    pub version: u16,
    /// The low 32 bits of the initiator's flags.
    pub flags: u32,
    /// The initiator's full name.
    pub name: &'a [u8],
}

impl<'a> OldSendName<'a> {
    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(7 + self.name.len());
        b.push(tag::OLD_NAME);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(self.name);
        b
    }

    /// Decodes a body whose tag is `'n'`. The version is returned as sent;
    /// the acceptor decides what it supports.
    pub fn decode(body: &'a [u8]) -> Result<Self, HandshakeError> {
        let mut r = tagged(body, tag::OLD_NAME)?;
        let version = r.u16().ok_or(short("old send_name too short"))?;
        let flags = r.u32().ok_or(short("old send_name too short"))?;
        let name = r.rest();
        if name.len() > MAX_NAME_BYTES {
            return Err(HandshakeError::BadMessage("node name too long"));
        }
        Ok(Self {
            version,
            flags,
            name,
        })
    }
}

/// Either form of send_name, as the acceptor receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnySendName<'a> {
    /// `'N'`, version 6.
    New(SendName<'a>),
    /// `'n'`, version 5.
    Old(OldSendName<'a>),
}

impl<'a> AnySendName<'a> {
    /// Decodes `'N'` or `'n'` by the tag.
    pub fn decode(body: &'a [u8]) -> Result<Self, HandshakeError> {
        match body.first() {
            Some(&tag::NEW) => SendName::decode(body).map(Self::New),
            Some(&tag::OLD_NAME) => OldSendName::decode(body).map(Self::Old),
            Some(_) => Err(HandshakeError::BadMessage(
                "expected send_name ('N' or 'n')",
            )),
            None => Err(HandshakeError::BadMessage("empty message")),
        }
    }
}

/// A status (`'s'` then text, no NUL), and the initiator's answer to `alive`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `ok`: go on.
    Ok,
    /// `ok_simultaneous`: go on; the acceptor drops its own attempt.
    OkSimultaneous,
    /// `nok`: simultaneous connect, the acceptor keeps its own attempt.
    Nok,
    /// `not_allowed`: refused (missing flags, or not allowed to connect).
    NotAllowed,
    /// `alive`: the acceptor believes a connection from this node exists.
    Alive,
    /// `named:`: the answer to a NAME_ME request.
    Named {
        /// The full name assigned to the initiator.
        name: String,
        /// The creation assigned to the initiator.
        creation: u32,
    },
    /// `true`: the initiator's answer to `alive` (its old connection is
    /// dead; go on).
    True,
    /// `false`: the initiator's answer to `alive` (abort).
    False,
}

impl Status {
    /// The text after `'s'` for the fixed statuses; `None` for `named:`.
    pub fn text(&self) -> Option<&'static str> {
        Some(match self {
            Self::Ok => "ok",
            Self::OkSimultaneous => "ok_simultaneous",
            Self::Nok => "nok",
            Self::NotAllowed => "not_allowed",
            Self::Alive => "alive",
            Self::True => "true",
            Self::False => "false",
            Self::Named { .. } => return None,
        })
    }

    /// Encodes the body.
    ///
    /// # Panics
    /// Panics if a `named:` name is longer than `u16::MAX`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![tag::STATUS];
        match self {
            Self::Named { name, creation } => {
                b.extend_from_slice(b"named:");
                put_name16(&mut b, name.as_bytes());
                b.extend_from_slice(&creation.to_be_bytes());
            }
            other => b.extend_from_slice(other.text().unwrap_or_default().as_bytes()),
        }
        b
    }

    /// Decodes a body whose tag is `'s'`. The text must match exactly,
    /// except that `named:` may be followed by trailing bytes.
    pub fn decode(body: &[u8]) -> Result<Self, HandshakeError> {
        let text = tagged(body, tag::STATUS)?.rest();
        if let Some(rest) = text.strip_prefix(b"named:") {
            let mut r = Reader::new(rest);
            let name = take_name16(&mut r, "named: status too short")?;
            let creation = r.u32().ok_or(short("named: status too short"))?;
            let name = utf8_name(name)?.to_owned();
            return Ok(Self::Named { name, creation });
        }
        Ok(match text {
            b"ok" => Self::Ok,
            b"ok_simultaneous" => Self::OkSimultaneous,
            b"nok" => Self::Nok,
            b"not_allowed" => Self::NotAllowed,
            b"alive" => Self::Alive,
            b"true" => Self::True,
            b"false" => Self::False,
            _ => return Err(HandshakeError::BadMessage("unknown status")),
        })
    }
}

/// The acceptor's challenge:
/// `'N' | Flags u64 | Challenge u32 | Creation u32 | Nlen u16 | Name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// The acceptor's flags.
    pub flags: u64,
    /// The challenge the initiator must answer.
    pub challenge: u32,
    /// The acceptor's creation.
    pub creation: u32,
    /// The acceptor's full name; must equal the name the initiator dialled.
    pub name: &'a [u8],
}

impl<'a> Challenge<'a> {
    /// Encodes the body.
    ///
    /// # Panics
    /// Panics if `name` is longer than `u16::MAX`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(21 + self.name.len());
        b.push(tag::NEW);
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&self.challenge.to_be_bytes());
        b.extend_from_slice(&self.creation.to_be_bytes());
        put_name16(&mut b, self.name);
        b
    }

    /// Decodes a body whose tag is `'N'`; bytes after Name are ignored.
    pub fn decode(body: &'a [u8]) -> Result<Self, HandshakeError> {
        let mut r = tagged(body, tag::NEW)?;
        let flags = r.u64().ok_or(short("challenge too short"))?;
        let challenge = r.u32().ok_or(short("challenge too short"))?;
        let creation = r.u32().ok_or(short("challenge too short"))?;
        let name = take_name16(&mut r, "challenge too short")?;
        Ok(Self {
            flags,
            challenge,
            creation,
            name,
        })
    }
}

/// The complement after an old send_name: `'c' | FlagsHigh u32 | Creation u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complement {
    /// Flag bits 32..63 of the initiator.
    pub flags_high: u32,
    /// The initiator's creation.
    pub creation: u32,
}

impl Complement {
    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![tag::COMPLEMENT];
        b.extend_from_slice(&self.flags_high.to_be_bytes());
        b.extend_from_slice(&self.creation.to_be_bytes());
        b
    }

    /// Decodes a body whose tag is `'c'`; it must be exactly 9 bytes.
    pub fn decode(body: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = tagged(body, tag::COMPLEMENT)?;
        let flags_high = r.u32().ok_or(short("complement too short"))?;
        let creation = r.u32().ok_or(short("complement too short"))?;
        exact(&r, "complement has trailing bytes")?;
        Ok(Self {
            flags_high,
            creation,
        })
    }
}

/// challenge_reply: `'r' | Challenge u32 | Digest[16]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeReply {
    /// The initiator's own challenge, for the acceptor to answer.
    pub challenge: u32,
    /// The initiator's answer to the acceptor's challenge.
    pub digest: [u8; 16],
}

impl ChallengeReply {
    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![tag::REPLY];
        b.extend_from_slice(&self.challenge.to_be_bytes());
        b.extend_from_slice(&self.digest);
        b
    }

    /// Decodes a body whose tag is `'r'`; it must be exactly 21 bytes.
    pub fn decode(body: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = tagged(body, tag::REPLY)?;
        let challenge = r.u32().ok_or(short("challenge_reply too short"))?;
        let digest = r.array().ok_or(short("challenge_reply too short"))?;
        exact(&r, "challenge_reply has trailing bytes")?;
        Ok(Self { challenge, digest })
    }
}

/// challenge_ack: `'a' | Digest[16]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeAck {
    /// The acceptor's answer to the initiator's challenge.
    pub digest: [u8; 16],
}

impl ChallengeAck {
    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![tag::ACK];
        b.extend_from_slice(&self.digest);
        b
    }

    /// Decodes a body whose tag is `'a'`; it must be exactly 17 bytes.
    pub fn decode(body: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = tagged(body, tag::ACK)?;
        let digest = r.array().ok_or(short("challenge_ack too short"))?;
        exact(&r, "challenge_ack has trailing bytes")?;
        Ok(Self { digest })
    }
}

/// A node name from the wire as text. OTP sends atom text as UTF-8; anything
/// else is refused rather than guessed at.
pub fn utf8_name(name: &[u8]) -> Result<&str, HandshakeError> {
    std::str::from_utf8(name).map_err(|_| HandshakeError::BadMessage("node name is not UTF-8"))
}

/// Whether `name` is a full node name by the one rule of
/// [`epmd_proto::NodeName`] (OTP's `net_kernel` rule: alive part of
/// `[A-Za-z0-9_-]`, host of `'!'..='ÿ'`, at most 255 characters).
pub fn is_full_name(name: &str) -> bool {
    epmd_proto::NodeName::is_valid(name)
}

/// Whether `name` is acceptable as the name part of a NAME_ME send_name or
/// as a name at all: non-empty, no NUL, at most [`MAX_NAME_BYTES`].
pub fn is_host_only(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_BYTES && !name.contains('\0')
}

fn tagged(body: &[u8], want: u8) -> Result<Reader<'_>, HandshakeError> {
    match body.split_first() {
        Some((&t, rest)) if t == want => Ok(Reader::new(rest)),
        Some(_) => Err(HandshakeError::BadMessage("unexpected message tag")),
        None => Err(HandshakeError::BadMessage("empty message")),
    }
}

fn short(msg: &'static str) -> HandshakeError {
    HandshakeError::BadMessage(msg)
}

fn exact(r: &Reader<'_>, msg: &'static str) -> Result<(), HandshakeError> {
    if r.rest().is_empty() {
        Ok(())
    } else {
        Err(HandshakeError::BadMessage(msg))
    }
}

fn take_name16<'a>(
    r: &mut Reader<'a>,
    too_short: &'static str,
) -> Result<&'a [u8], HandshakeError> {
    let n = usize::from(r.u16().ok_or(short(too_short))?);
    if n > MAX_NAME_BYTES {
        return Err(HandshakeError::BadMessage("node name too long"));
    }
    r.bytes(n).ok_or(HandshakeError::BadMessage(
        "name length exceeds the message",
    ))
}

fn put_name16(out: &mut Vec<u8>, name: &[u8]) {
    let len = u16::try_from(name.len()).expect("node name fits in u16");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Layouts from the distribution protocol documentation, byte by byte.
    #[test]
    fn golden_layouts() {
        let sn = SendName {
            flags: 0x0102_0304_0506_0708,
            creation: 0x0a0b_0c0d,
            name: b"a@h",
        };
        assert_eq!(
            sn.encode(),
            [b'N', 1, 2, 3, 4, 5, 6, 7, 8, 0xa, 0xb, 0xc, 0xd, 0, 3, b'a', b'@', b'h']
        );
        let ch = Challenge {
            flags: 1,
            challenge: 0x8000_0000,
            creation: 7,
            name: b"b@h",
        };
        assert_eq!(
            ch.encode(),
            [b'N', 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0, 0, 0, 0, 0, 0, 7, 0, 3, b'b', b'@', b'h']
        );
        let old = OldSendName {
            version: 5,
            flags: 0x0100_0000,
            name: b"u@h",
        };
        assert_eq!(old.encode(), [b'n', 0, 5, 1, 0, 0, 0, b'u', b'@', b'h']);
        assert_eq!(
            Complement {
                flags_high: 4,
                creation: 2
            }
            .encode(),
            [b'c', 0, 0, 0, 4, 0, 0, 0, 2]
        );
        assert_eq!(Status::OkSimultaneous.encode(), b"sok_simultaneous");
        assert_eq!(
            Status::Named {
                name: "x@h".into(),
                creation: 9
            }
            .encode(),
            b"snamed:\x00\x03x@h\x00\x00\x00\x09"
        );
        let reply = ChallengeReply {
            challenge: 5,
            digest: [0xee; 16],
        }
        .encode();
        assert_eq!(reply.len(), 21);
        assert_eq!(reply[..5], [b'r', 0, 0, 0, 5]);
        assert_eq!(ChallengeAck { digest: [1; 16] }.encode().len(), 17);
    }

    #[test]
    fn roundtrips_and_trailing_bytes() {
        let sn = SendName {
            flags: 77,
            creation: 3,
            name: b"n@host",
        };
        let mut body = sn.encode();
        assert_eq!(SendName::decode(&body), Ok(sn.clone()));
        body.extend_from_slice(b"future fields");
        assert_eq!(SendName::decode(&body), Ok(sn));

        let ch = Challenge {
            flags: 9,
            challenge: 1,
            creation: 2,
            name: b"b@h",
        };
        let mut body = ch.encode();
        body.push(0);
        assert_eq!(Challenge::decode(&body), Ok(ch));

        let named = Status::Named {
            name: "x@y".into(),
            creation: 4,
        };
        let mut body = named.encode();
        body.extend_from_slice(b"zz");
        assert_eq!(Status::decode(&body), Ok(named));
        for s in [
            Status::Ok,
            Status::OkSimultaneous,
            Status::Nok,
            Status::NotAllowed,
            Status::Alive,
            Status::True,
            Status::False,
        ] {
            assert_eq!(Status::decode(&s.encode()), Ok(s));
        }
        assert!(Status::decode(b"sok\0").is_err());
        assert!(Status::decode(b"sOK").is_err());

        let old = OldSendName {
            version: 5,
            flags: 1,
            name: b"u@h",
        };
        assert_eq!(
            AnySendName::decode(&old.encode()),
            Ok(AnySendName::Old(old))
        );
    }

    #[test]
    fn exact_lengths() {
        let mut r = ChallengeReply {
            challenge: 1,
            digest: [0; 16],
        }
        .encode();
        r.push(0);
        assert!(ChallengeReply::decode(&r).is_err());
        assert!(ChallengeReply::decode(&r[..20]).is_err());
        let mut a = ChallengeAck { digest: [0; 16] }.encode();
        assert!(ChallengeAck::decode(&a[..16]).is_err());
        a.push(0);
        assert!(ChallengeAck::decode(&a).is_err());
        assert!(Complement::decode(b"c\0\0\0\0\0\0\0").is_err());
    }

    #[test]
    fn bad_lengths_never_panic() {
        // Nlen larger than what follows.
        assert!(SendName::decode(b"N\0\0\0\0\0\0\0\0\0\0\0\0\x00\x09ab").is_err());
        assert!(Challenge::decode(b"N\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xff\xffab").is_err());
        for cut in 0..20 {
            let body = SendName {
                flags: 1,
                creation: 1,
                name: b"a@b",
            }
            .encode();
            if cut < body.len() {
                assert!(SendName::decode(&body[..cut]).is_err());
            }
        }
        assert!(AnySendName::decode(b"").is_err());
        assert!(AnySendName::decode(b"x").is_err());
    }

    #[test]
    fn names() {
        assert!(is_full_name("a@b"));
        assert!(!is_full_name("a@"));
        assert!(!is_full_name("@b"));
        assert!(!is_full_name("ab"));
        assert!(!is_full_name("a\0@b"));
        assert!(is_host_only("host"));
        assert!(!is_host_only(""));
        assert!(utf8_name(b"\xff").is_err());
    }
}
