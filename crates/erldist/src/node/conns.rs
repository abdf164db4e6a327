//! The connection table: one slot per peer, set up on first use, shared
//! by concurrent callers, replaced when a newer connection wins.

use std::sync::Arc;

use dist_proto::{Established, HandshakeError, PeerCheck};
use erl_term::{Chunks, Term};
use tracing::{debug, info};

use super::slots::Claim;
use super::{lock, split_name, ConnInfo, Inner, Node, NodeError, NodeEvent};
use crate::conn::{self, ConnError, ConnHandle};
use crate::transport::Proto;

impl Node {
    /// Every live connection and the transport it uses.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let mut v: Vec<ConnInfo> = lock(&self.inner.conns)
            .live()
            .map(|(peer, h)| ConnInfo {
                peer: peer.to_owned(),
                // Connections are only made on the fixed transports.
                transport: Proto::from_name(h.transport).unwrap_or(Proto::InetTcp),
                flags: h.flags,
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// Closes the connection to `peer`, if any.
    pub fn disconnect(&self, peer: &str) {
        if let Some(h) = lock(&self.inner.conns).up(peer) {
            h.close();
        }
    }
}

/// Sends a packet on `h`, waiting for room in its queue; a failure names
/// the peer.
pub(super) async fn send_on(h: &ConnHandle, peer: &str, packet: Chunks) -> Result<(), NodeError> {
    h.send(packet).await.map_err(|cause| NodeError::Connect {
        peer: peer.to_owned(),
        cause,
    })
}

impl Inner {
    /// Empties `peer`'s slot if `h` is still its connection; returns whether
    /// it was (else a newer connection replaced it).
    pub(super) fn remove_conn(&self, h: &ConnHandle, peer: &str) -> bool {
        if !lock(&self.conns).remove(peer, |c| c.id == h.id) {
            return false;
        }
        self.conn_changed.notify_waiters();
        true
    }

    pub(super) fn up(&self, peer: &str) -> Option<ConnHandle> {
        lock(&self.conns).up(peer)
    }

    /// The connection to `peer`, set up on first use. Concurrent callers
    /// share one attempt.
    pub(super) async fn conn(self: &Arc<Self>, peer: &str) -> Result<ConnHandle, NodeError> {
        // The hot path of every send: one lock, one lookup.
        if let Some(h) = self.up(peer) {
            return Ok(h);
        }
        split_name(peer)?;
        let deadline = tokio::time::Instant::now() + self.cfg.setup_time * 2;
        loop {
            let notified = self.conn_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mine = match lock(&self.conns).claim(peer) {
                Claim::Up(h) => return Ok(h),
                // Someone is already setting this connection up; wait.
                Claim::Wait => false,
                Claim::Dial => true,
            };
            if !mine {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Err(NodeError::Timeout);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.connect_out(peer)).await {
                Ok(Ok(h)) => return Ok(h),
                Ok(Err(NodeError::Connect {
                    cause: ConnError::Handshake(HandshakeError::Nok),
                    ..
                })) => {
                    // Simultaneous connect, and the peer's attempt won: it
                    // is being installed by the acceptor; wait for it.
                    debug!(
                        peer,
                        "simultaneous connect: waiting for the peer's connection"
                    );
                    let notified = self.conn_changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if let Some(h) = self.up(peer) {
                        return Ok(h);
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        self.clear_connecting(peer);
                        return Err(NodeError::Timeout);
                    }
                }
                Ok(Err(e)) => {
                    self.clear_connecting(peer);
                    return Err(e);
                }
                Err(_) => {
                    self.clear_connecting(peer);
                    return Err(NodeError::Timeout);
                }
            }
        }
    }

    fn clear_connecting(&self, peer: &str) {
        lock(&self.conns).clear_connecting(peer);
        self.conn_changed.notify_waiters();
    }

    /// Makes an established connection the one for its peer.
    pub(super) fn install<S>(
        self: &Arc<Self>,
        stream: S,
        est: Established,
        transport: &'static str,
    ) -> ConnHandle
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let peer = est.peer_name.clone();
        let h = conn::spawn(
            stream,
            est,
            transport,
            self.cfg.net_ticktime,
            self.cfg.decode_limits,
            self.clone(),
        );
        let old = lock(&self.conns).install(&peer, h.clone());
        if let Some(old) = old {
            // `alive` answered true: the old connection is stale.
            old.close();
        }
        self.conn_changed.notify_waiters();
        let _ = self.events.send(NodeEvent::Up(peer.clone()));
        info!(peer, transport, "connection up");
        h
    }

    pub(super) fn peer_check(&self, peer: &str) -> PeerCheck {
        lock(&self.conns).peer_check(peer)
    }

    /// Drops the reservation `peer_check` made, if the handshake failed.
    pub(super) fn clear_accepting(&self, peer: &str) {
        lock(&self.conns).clear_accepting(peer);
        self.conn_changed.notify_waiters();
    }

    pub(super) fn send_packet(&self, h: &ConnHandle, ctrl: &Term, payload: Option<&Term>) {
        h.try_send(conn::encode_packet(ctrl, payload));
    }
}
