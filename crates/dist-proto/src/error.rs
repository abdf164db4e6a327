//! Why a handshake failed, and why a configuration was refused.

use crate::flags;
use crate::Stage;

/// Why a handshake ended without a connection. After any of these the caller
/// closes the socket; the state machine sends nothing more (except where a
/// variant says a status was queued first, which the caller should still
/// flush with [`poll_transmit`](crate::Connector::poll_transmit)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's digest does not match our challenge: it has another
    /// cookie (or is not a real node). The acceptor sends nothing more.
    #[error("wrong cookie: the peer's digest does not answer our challenge")]
    WrongCookie,
    /// The peer lacks flags this node requires (after expanding
    /// MANDATORY_25_DIGEST). An acceptor queued `'s' "not_allowed"` first.
    #[error("peer lacks mandatory distribution flags {missing:#x} ({})", flags::names(*missing).join(", "))]
    NotAllowed {
        /// The required bits the peer did not offer.
        missing: u64,
    },
    /// The acceptor answered `not_allowed` (flags, or its own policy).
    #[error("the peer answered not_allowed")]
    PeerNotAllowed,
    /// The acceptor's caller refused the peer ([`PeerCheck::Refuse`](crate::PeerCheck::Refuse));
    /// `'s' "not_allowed"` was queued.
    #[error("connection refused by this node")]
    Refused,
    /// The acceptor's challenge names another node than the one dialled.
    #[error("dialled {dialled} but the peer's challenge names {got}")]
    NameMismatch {
        /// The node this side dialled.
        dialled: String,
        /// The name in the challenge (lossily decoded if not UTF-8).
        got: String,
    },
    /// A connection between the two nodes already exists: the acceptor said
    /// `alive` and this initiator is configured to answer `false`, or this
    /// acceptor said `alive` and the initiator answered `false`.
    #[error("a connection to the peer already exists (alive)")]
    Alive,
    /// Simultaneous connect lost: the acceptor answered `nok` (initiator), or
    /// this acceptor answered `nok` because its own attempt wins (acceptor).
    #[error("simultaneous connect: the other attempt wins (nok)")]
    Nok,
    /// A message that is malformed or not the one expected at this step.
    #[error("bad handshake message: {0}")]
    BadMessage(&'static str),
    /// A length prefix above the handshake limit.
    #[error("handshake message of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// An old `'n'` send_name with a version other than 5.
    #[error("unsupported distribution version {0}")]
    UnsupportedVersion(u16),
    /// The whole handshake did not finish within the configured timeout.
    #[error("handshake timed out waiting for {stage}")]
    Timeout {
        /// What the state machine was waiting for.
        stage: Stage,
    },
    /// The caller reported end of stream before the handshake finished. An
    /// initiator that sees this while waiting for the challenge_ack was most
    /// likely rejected for a wrong cookie: OTP closes without a word.
    #[error("connection closed while waiting for {stage}")]
    Closed {
        /// What the state machine was waiting for.
        stage: Stage,
    },
}

/// Why a [`HandshakeConfig`](crate::HandshakeConfig) (or a dialled name) was
/// refused before any byte was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// This node's name is not `alive@host` (or, with NAME_ME, a host).
    #[error("invalid node name {0:?}")]
    BadNodeName(String),
    /// The dialled peer name is not `alive@host`.
    #[error("invalid peer name {0:?}")]
    BadPeerName(String),
    /// The flags lack bits the handshake itself needs (HANDSHAKE_23).
    #[error("flags {0:#x} lack HANDSHAKE_23")]
    NoHandshake23(u64),
}
