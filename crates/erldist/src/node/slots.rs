//! The connection-slot table: at most one connection per peer, and which
//! side is setting it up. Plain data: each method says what the caller
//! must do (wait, dial, close an old connection), so the rules for
//! concurrent and simultaneous connects are tested without sockets.

use std::collections::HashMap;

use dist_proto::PeerCheck;

/// The state of one peer's connection.
#[derive(Debug)]
enum Slot<H> {
    /// This node is dialling the peer.
    Connecting,
    /// The peer is dialling this node; its handshake is in progress.
    Accepting,
    /// Up, with its handle.
    Up(H),
}

/// What a local sender should do to reach a peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim<H> {
    /// Use this connection.
    Up(H),
    /// Another attempt (ours or the peer's) is in progress: wait for it.
    Wait,
    /// The slot is now reserved for this caller: dial.
    Dial,
}

/// One slot per peer node name. `H` is a connection handle.
#[derive(Debug)]
pub(crate) struct SlotTable<H> {
    slots: HashMap<String, Slot<H>>,
}

impl<H: Clone> SlotTable<H> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self {
            slots: HashMap::new(),
        }
    }

    /// The live connection to `peer`, if any.
    pub(crate) fn up(&self, peer: &str) -> Option<H> {
        match self.slots.get(peer) {
            Some(Slot::Up(h)) => Some(h.clone()),
            _ => None,
        }
    }

    /// A sender wants `peer`: use it, wait for it, or dial it.
    pub(crate) fn claim(&mut self, peer: &str) -> Claim<H> {
        match self.slots.get(peer) {
            Some(Slot::Up(h)) => Claim::Up(h.clone()),
            Some(Slot::Connecting | Slot::Accepting) => Claim::Wait,
            None => {
                self.slots.insert(peer.to_owned(), Slot::Connecting);
                Claim::Dial
            }
        }
    }

    /// What the acceptor tells the handshake about an incoming `peer`. A
    /// free slot is reserved, so a local send waits for this connection
    /// instead of dialling a second one.
    pub(crate) fn peer_check(&mut self, peer: &str) -> PeerCheck {
        match self.slots.get(peer) {
            None => {
                self.slots.insert(peer.to_owned(), Slot::Accepting);
                PeerCheck::Free
            }
            Some(Slot::Connecting) => PeerCheck::PendingConnect,
            // A second incoming attempt while the first is in progress (a
            // peer retrying quickly): let both run; the later one installed
            // replaces the earlier.
            Some(Slot::Accepting) => PeerCheck::Free,
            Some(Slot::Up(_)) => PeerCheck::Connected,
        }
    }

    /// A dial failed: drop its reservation (not someone else's slot).
    pub(crate) fn clear_connecting(&mut self, peer: &str) {
        if matches!(self.slots.get(peer), Some(Slot::Connecting)) {
            self.slots.remove(peer);
        }
    }

    /// An incoming handshake failed: drop its reservation.
    pub(crate) fn clear_accepting(&mut self, peer: &str) {
        if matches!(self.slots.get(peer), Some(Slot::Accepting)) {
            self.slots.remove(peer);
        }
    }

    /// Makes `h` the connection to `peer`; returns the connection it
    /// replaces, which the caller closes (the handshake found it stale).
    pub(crate) fn install(&mut self, peer: &str, h: H) -> Option<H> {
        match self.slots.insert(peer.to_owned(), Slot::Up(h)) {
            Some(Slot::Up(old)) => Some(old),
            _ => None,
        }
    }

    /// A connection closed: empty the slot if `is_it` says the slot still
    /// holds that connection; returns whether it did (else a newer one
    /// replaced it and nothing went down).
    pub(crate) fn remove(&mut self, peer: &str, is_it: impl FnOnce(&H) -> bool) -> bool {
        if !matches!(self.slots.get(peer), Some(Slot::Up(h)) if is_it(h)) {
            return false;
        }
        self.slots.remove(peer);
        true
    }

    /// Every live connection, by peer.
    pub(crate) fn live(&self) -> impl Iterator<Item = (&str, &H)> {
        self.slots.iter().filter_map(|(p, s)| match s {
            Slot::Up(h) => Some((p.as_str(), h)),
            Slot::Connecting | Slot::Accepting => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sender_dials_the_others_wait() {
        let mut t = SlotTable::<u32>::new();
        assert_eq!(t.claim("p@h"), Claim::Dial);
        assert_eq!(t.claim("p@h"), Claim::Wait);
        assert_eq!(t.up("p@h"), None);
        assert_eq!(t.install("p@h", 1), None);
        assert_eq!(t.claim("p@h"), Claim::Up(1));
    }

    #[test]
    fn a_failed_dial_frees_the_slot() {
        let mut t = SlotTable::<u32>::new();
        assert_eq!(t.claim("p@h"), Claim::Dial);
        t.clear_accepting("p@h");
        assert_eq!(t.claim("p@h"), Claim::Wait, "not the acceptor's to clear");
        t.clear_connecting("p@h");
        assert_eq!(t.claim("p@h"), Claim::Dial);
    }

    #[test]
    fn incoming_handshakes_see_the_slot() {
        let mut t = SlotTable::<u32>::new();
        assert_eq!(t.peer_check("a@h"), PeerCheck::Free);
        assert_eq!(
            t.claim("a@h"),
            Claim::Wait,
            "a sender waits for the acceptor"
        );
        assert_eq!(
            t.peer_check("a@h"),
            PeerCheck::Free,
            "a quick retry runs too"
        );
        t.clear_accepting("a@h");
        assert_eq!(t.claim("b@h"), Claim::Dial);
        assert_eq!(t.peer_check("b@h"), PeerCheck::PendingConnect);
        t.install("b@h", 2);
        assert_eq!(t.peer_check("b@h"), PeerCheck::Connected);
    }

    #[test]
    fn a_newer_connection_replaces_and_outlives_the_old() {
        let mut t = SlotTable::<u32>::new();
        t.install("p@h", 1);
        assert_eq!(t.install("p@h", 2), Some(1));
        assert!(
            !t.remove("p@h", |h| *h == 1),
            "the old one closing changes nothing"
        );
        assert_eq!(t.up("p@h"), Some(2));
        assert!(t.remove("p@h", |h| *h == 2));
        assert_eq!(t.up("p@h"), None);
        assert_eq!(t.live().count(), 0);
    }
}
