//! What a handshake reports to its caller.

use std::fmt;

use crate::message::Status;
use crate::HandshakeError;

/// Where a handshake is: what it waits for next, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Acceptor: waiting for the initiator's send_name (`'N'` or `'n'`).
    Name,
    /// Acceptor: waiting for the caller's [`PeerCheck`]
    /// ([`Acceptor::resolve`](crate::Acceptor::resolve)).
    PeerCheck,
    /// Acceptor: said `alive`, waiting for `true` or `false`.
    AliveReply,
    /// Acceptor: sent the challenge to an old `'n'` initiator, waiting for
    /// its `'c'` complement.
    Complement,
    /// Acceptor: waiting for the challenge_reply (`'r'`).
    ChallengeReply,
    /// Initiator: sent send_name, waiting for the status.
    Status,
    /// Initiator: waiting for the acceptor's challenge (`'N'`).
    Challenge,
    /// Initiator: sent the challenge_reply, waiting for the ack (`'a'`).
    ChallengeAck,
    /// The connection is up.
    Established,
    /// The handshake failed.
    Failed,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Name => "send_name",
            Self::PeerCheck => "the node's peer check",
            Self::AliveReply => "the answer to alive",
            Self::Complement => "the complement",
            Self::ChallengeReply => "challenge_reply",
            Self::Status => "status",
            Self::Challenge => "challenge",
            Self::ChallengeAck => "challenge_ack",
            Self::Established => "nothing (established)",
            Self::Failed => "nothing (failed)",
        })
    }
}

/// A handshake's report, from `poll_event`. A handshake reports at most one
/// [`Event::PeerNamed`] (acceptor only) and then exactly one of
/// [`Event::Established`] or [`Event::Failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Acceptor only: the initiator's send_name arrived and its flags are
    /// acceptable; the handshake waits for
    /// [`Acceptor::resolve`](crate::Acceptor::resolve).
    PeerNamed {
        /// The initiator's full name, or its host alone with NAME_ME.
        name: String,
        /// Whether the initiator asked for a name (NAME_ME): answer with
        /// [`PeerCheck::AssignName`] or [`PeerCheck::Refuse`].
        wants_name: bool,
    },
    /// The connection is up.
    Established(Established),
    /// The handshake failed; close the socket once the transmit queue is
    /// flushed.
    Failed(HandshakeError),
}

/// A finished handshake: everything the connection layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Established {
    /// The peer's full name (for an acceptor that assigned a NAME_ME name,
    /// the assigned one).
    pub peer_name: String,
    /// The peer's flags, with MANDATORY_25_DIGEST expanded.
    pub peer_flags: u64,
    /// The flags in force on the connection: ours AND the peer's.
    pub flags: u64,
    /// The peer's creation.
    pub peer_creation: u32,
    /// The status the acceptor sent: `Ok`, `OkSimultaneous` (the acceptor
    /// dropped its own attempt), `Alive` (the initiator answered `true`: the
    /// acceptor's node layer must drop its stale connection) or `Named`.
    pub status: Status,
    /// Initiator with NAME_ME only: this node's assigned full name and
    /// creation, from the `named:` status.
    pub assigned: Option<(String, u32)>,
    /// Bytes received after the last handshake message: the start of the
    /// `u32`-framed distribution traffic. Feed them to the connection layer
    /// before anything read later.
    pub leftover: Vec<u8>,
}

/// The acceptor's caller's answer about the peer named in send_name: what
/// its node already has with that peer. See
/// [`Acceptor::resolve`](crate::Acceptor::resolve) for the statuses each
/// answer produces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerCheck {
    /// No connection and no attempt of ours to this peer: `ok`.
    Free,
    /// This node is itself dialling the peer right now: the simultaneous
    /// connect rule decides between `ok_simultaneous` and `nok`.
    PendingConnect,
    /// This node believes it is connected to the peer: `alive`, then the
    /// initiator's `true` continues and `false` fails.
    Connected,
    /// The node does not accept this peer (an allow list, a limit):
    /// `not_allowed`.
    Refuse,
    /// Answer a NAME_ME request: `named:` with this full name and creation.
    AssignName {
        /// The full name given to the initiator.
        name: String,
        /// The creation given to the initiator.
        creation: u32,
    },
}
