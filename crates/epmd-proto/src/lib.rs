//! EPMD wire codec: OTP's port-mapper protocol plus the epmdx multi-transport
//! extension. This crate does no I/O; it turns byte slices into typed requests
//! and replies and back, so the daemon, the client and the fuzz targets share
//! one definition of the protocol.
//!
//! Decoding is check-then-parse, in the style of mini-redis: [`frame::check`]
//! tells whether a buffer holds a complete request frame (and rejects framing
//! that OTP's C epmd rejects) before [`Request::decode`] looks inside it.
//!
//! # Layout
//!
//! - [`frame`]: the `u16` request framing and its limits (1..=3057 bytes).
//! - [`name`]: OTP's node-name rules and the extension's protocol-name rules.
//! - [`legacy`]: the OTP requests and replies (ALIVE2, PORT_PLEASE2, NAMES,
//!   DUMP, KILL, STOP), byte-compatible with `erts/epmd`.
//! - [`ext`]: the multi-transport extension (ALIVE3, PORT_PLEASE3, NAMES3,
//!   DUMP3, UNREG3), specified in `docs/protocol.md`.
//! - [`request`]: the [`Request`] enum that dispatches on the command byte.
//!
//! All integers on the wire are big-endian.
//!
//! The domain's nouns are types here too: [`NodeName`], [`NodeType`],
//! [`ProtoName`], [`DEFAULT_PORT`] and [`port_from_env`].

pub mod ext;
pub mod frame;
pub mod legacy;
pub mod name;
pub mod request;

pub use name::{NodeName, NodeNameError, ProtoName};
pub use request::{Malformed, Request};

/// The port epmd listens on when neither `-port` nor `ERL_EPMD_PORT` says
/// otherwise.
pub const DEFAULT_PORT: u16 = 4369;

/// The epmd port from `ERL_EPMD_PORT`, or [`DEFAULT_PORT`] when it is unset.
///
/// One rule for the daemon, its client modes and the libraries: the value is
/// read as the C epmd reads it (`atoi`: leading blanks and sign, then digits,
/// stopping at the first other byte; its low 16 bits are the port). See
/// [`port_from_env_value`].
pub fn port_from_env() -> u16 {
    port_from_env_value(std::env::var("ERL_EPMD_PORT").ok().as_deref())
}

/// [`port_from_env`] on a given value of `ERL_EPMD_PORT` (`None`: unset).
pub fn port_from_env_value(var: Option<&str>) -> u16 {
    let Some(v) = var else {
        return DEFAULT_PORT;
    };
    let t = v.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    // The C code stores atoi's int into a port: keep the low 16 bits.
    (if neg { -n } else { n }) as u16
}

/// The node type byte of ALIVE2/ALIVE3 and PORT2_RESP.
///
/// The wire structs keep a raw `u8` because the C epmd stores and echoes any
/// byte there; this enum names the two values OTP sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// `M` (77): a normal node, connected transitively.
    Normal,
    /// `H` (72): a hidden node (`-hidden`, `erl_call`, C and Java nodes).
    Hidden,
}

impl NodeType {
    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Self::Normal => 77,
            Self::Hidden => 72,
        }
    }

    /// The type for a wire byte, if it is one of the two OTP sends.
    pub const fn from_code(b: u8) -> Option<Self> {
        match b {
            77 => Some(Self::Normal),
            72 => Some(Self::Hidden),
            _ => None,
        }
    }

    /// `Hidden` when `hidden`, else `Normal`.
    pub const fn hidden(hidden: bool) -> Self {
        if hidden {
            Self::Hidden
        } else {
            Self::Normal
        }
    }
}

impl From<NodeType> for u8 {
    fn from(t: NodeType) -> Self {
        t.code()
    }
}

/// Well-known command and reply codes.
pub mod code {
    /// ALIVE2_REQ, `x`: register a node (kept open).
    pub const ALIVE2_REQ: u8 = 120;
    /// ALIVE2_RESP, `y`: reply with a 16-bit creation.
    pub const ALIVE2_RESP: u8 = 121;
    /// ALIVE2_X_RESP, `v`: reply with a 32-bit creation.
    pub const ALIVE2_X_RESP: u8 = 118;
    /// PORT_PLEASE2_REQ, `z`: look a node up.
    pub const PORT_PLEASE2_REQ: u8 = 122;
    /// PORT2_RESP, `w`: lookup reply (also used, length-prefixed, by PORT3).
    pub const PORT2_RESP: u8 = 119;
    /// NAMES_REQ, `n`.
    pub const NAMES_REQ: u8 = 110;
    /// DUMP_REQ, `d` (local peers only).
    pub const DUMP_REQ: u8 = 100;
    /// KILL_REQ, `k` (local peers only).
    pub const KILL_REQ: u8 = 107;
    /// STOP_REQ, `s` (local peers only, relaxed mode only).
    pub const STOP_REQ: u8 = 115;
    /// ALIVE3_REQ, `X`: register transports of a node (extension).
    pub const ALIVE3_REQ: u8 = 88;
    /// PORT_PLEASE3_REQ, `Z`: filtered multi-transport lookup (extension).
    pub const PORT_PLEASE3_REQ: u8 = 90;
    /// NAMES3_REQ, `N`: list nodes with all their transports (extension).
    pub const NAMES3_REQ: u8 = 78;
    /// DUMP3_REQ, `D`: local debug dump with creations (extension).
    pub const DUMP3_REQ: u8 = 68;
    /// UNREG3_REQ, `U`: remove one transport of the caller's own node (extension).
    pub const UNREG3_REQ: u8 = 85;
    /// UNREG3_RESP, `u`.
    pub const UNREG3_RESP: u8 = 117;
}

/// Limits that OTP's C epmd enforces, kept so replies stay byte-identical.
pub mod limits {
    /// Largest request length the C epmd accepts (INBUF_SIZE − 3).
    pub const MAX_PACKET: usize = 3057;
    /// MAXSYMLEN: the longest node name or Extra, in bytes.
    pub const MAX_SYMLEN: usize = 1020;
    /// The most UTF-8 characters a node name may have.
    pub const MAX_NAME_CHARS: usize = 255;
    /// The C epmd's unregistered-names list cap (5 with `-d`).
    pub const UNREG_LIST_CAP: usize = 1000;
    /// Longest protocol name in the extension.
    pub const MAX_PROTO_LEN: usize = 32;
    /// Most transports one node may register in the extension.
    pub const MAX_TRANSPORTS: usize = 16;
    /// Longest `-stop` name the OTP client sends.
    pub const MAX_STOP_NAME: usize = 1000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_port_reads_like_atoi() {
        assert_eq!(port_from_env_value(None), DEFAULT_PORT);
        assert_eq!(port_from_env_value(Some("4370")), 4370);
        assert_eq!(port_from_env_value(Some("  +4371x")), 4371);
        assert_eq!(port_from_env_value(Some("abc")), 0);
        assert_eq!(port_from_env_value(Some("70000")), 70000u32 as u16);
        assert_eq!(port_from_env_value(Some("-1")), u16::MAX);
    }

    #[test]
    fn node_type_codes() {
        assert_eq!(NodeType::Normal.code(), b'M');
        assert_eq!(u8::from(NodeType::Hidden), b'H');
        assert_eq!(NodeType::from_code(72), Some(NodeType::Hidden));
        assert_eq!(NodeType::from_code(0), None);
        assert_eq!(NodeType::hidden(false), NodeType::Normal);
    }
}
