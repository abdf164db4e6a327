//! The one interface both handshake machines offer, so a driver (the
//! node's tokio loop, a blocking test loop, the fuzz harness) is written
//! once for [`Connector`](crate::Connector) and [`Acceptor`](crate::Acceptor).

use std::time::Instant;

use crate::{Event, PeerCheck, Stage, Status};

/// A sans-I/O handshake: bytes in, framed messages and events out, time
/// passed in.
///
/// The caller loops: write whatever [`poll_transmit`](Self::poll_transmit)
/// yields; take reports from [`poll_event`](Self::poll_event), answering
/// [`Event::PeerNamed`] with [`resolve`](Self::resolve); read from the
/// socket into [`handle_input`](Self::handle_input), or call
/// [`handle_timeout`](Self::handle_timeout) once
/// [`poll_timeout`](Self::poll_timeout) has passed, or
/// [`handle_eof`](Self::handle_eof) at end of stream; until an
/// [`Event::Established`] or [`Event::Failed`] comes out. After `Failed`,
/// flush `poll_transmit` once more: a final status (`not_allowed`, `nok`)
/// may be queued.
pub trait Handshake {
    /// Takes bytes read from the socket. Input arriving at or after the
    /// deadline fails the handshake with a timeout instead.
    fn handle_input(&mut self, bytes: &[u8], now: Instant);

    /// Reports end of stream: fails with
    /// [`HandshakeError::Closed`](crate::HandshakeError::Closed) unless the
    /// handshake has already ended.
    fn handle_eof(&mut self);

    /// Fails the handshake with
    /// [`HandshakeError::Timeout`](crate::HandshakeError::Timeout) if `now`
    /// is at or past the deadline.
    fn handle_timeout(&mut self, now: Instant);

    /// The next framed message to write, in order.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once the
    /// handshake has ended (or when it has no timeout).
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next report: an acceptor's [`Event::PeerNamed`], then
    /// [`Event::Established`] or [`Event::Failed`].
    fn poll_event(&mut self) -> Option<Event>;

    /// Where the handshake is.
    fn stage(&self) -> Stage;

    /// Whether the handshake has ended (established or failed).
    fn is_done(&self) -> bool {
        matches!(self.stage(), Stage::Established | Stage::Failed)
    }

    /// Answers [`Event::PeerNamed`]: what the node knows about the peer
    /// (see [`Acceptor`](crate::Acceptor)'s implementation for the table of
    /// answers and statuses). Returns the status sent, or `None` (and does
    /// nothing) unless the handshake waits for this answer. Only an
    /// acceptor asks; a [`Connector`](crate::Connector) never does and
    /// ignores the call.
    fn resolve(&mut self, check: PeerCheck) -> Option<Status>;
}
