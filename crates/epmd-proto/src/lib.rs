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

pub mod ext;
pub mod frame;
pub mod legacy;
pub mod name;
pub mod request;

pub use request::{Malformed, Request};

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
