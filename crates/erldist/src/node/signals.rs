//! The I/O half of the process table: the process API mailboxes call
//! (send, link, monitor), incoming control messages, and carrying out the
//! table's [`Effect`]s on mailboxes and connections.

use std::sync::atomic::Ordering;

use erl_term::{Pid, Reference, Term};
use tracing::{debug, info};

use super::conns::send_on;
use super::procs::{Effect, Signal};
use super::{atom, read, write, Inner, Node, NodeError, NodeEvent};
use crate::conn::{self, ConnError, ConnHandle, Dispatch};
use crate::control::{build, Control};
use crate::op_flags::{self, Outgoing};

impl Node {
    /// Sends from `from` to `to`.
    pub(crate) async fn send_from(&self, from: &Pid, to: &Pid, msg: Term) -> Result<(), NodeError> {
        if to.node == self.inner.name {
            self.inner.deliver(to, msg);
            return Ok(());
        }
        let peer = to.node.as_str();
        let h = self.inner.conn(peer).await?;
        let packet = conn::encode_packet(&build::send(h.flags, from, to), Some(&msg));
        send_on(&h, peer, packet).await
    }

    /// Sends from `from` to `{name, node}`.
    pub(crate) async fn send_named_from(
        &self,
        from: &Pid,
        name: &str,
        node: &str,
        msg: Term,
    ) -> Result<(), NodeError> {
        let a = atom(name)?;
        if node == self.name() {
            let to = read(&self.inner.procs).whereis(&a);
            if let Some(to) = to {
                self.inner.deliver(&to, msg);
            }
            return Ok(());
        }
        let h = self.inner.conn(node).await?;
        let packet = conn::encode_packet(&build::reg_send(from, &a), Some(&msg));
        send_on(&h, node, packet).await
    }

    pub(crate) async fn monitor_from(
        &self,
        from: &Pid,
        target: Term,
        node: &str,
    ) -> Result<Reference, NodeError> {
        let r = self.make_ref();
        if node == self.name() {
            let fx = write(&self.inner.procs).monitor(from, target, node, &r);
            self.inner.apply(fx, None);
            return Ok(r);
        }
        // Connect first: a monitor recorded before the connection exists
        // would be fired by the failure of a connection it never used.
        let h = self.inner.conn(node).await?;
        write(&self.inner.procs).monitor(from, target.clone(), node, &r);
        let out = Outgoing::Monitor {
            from: from.clone(),
            target,
            reference: r.clone(),
        };
        match op_flags::encode(h.flags, out) {
            Some((ctrl, _)) => send_on(&h, node, conn::encode_packet(&ctrl, None)).await?,
            // As erts does: the monitor stays, and only watches the
            // connection (DOWN with `noconnection` when it goes).
            None => debug!(
                peer = node,
                "peer lacks DIST_MONITOR / DIST_MONITOR_NAME: the monitor only watches the connection"
            ),
        }
        Ok(r)
    }

    pub(crate) async fn demonitor_from(&self, from: &Pid, r: &Reference) {
        let remote = write(&self.inner.procs).demonitor(from, r);
        let Some((node, target)) = remote else {
            return;
        };
        if let Some(h) = self.inner.up(&node) {
            let out = Outgoing::Demonitor {
                from: from.clone(),
                target,
                reference: r.clone(),
            };
            if let Some((ctrl, _)) = op_flags::encode(h.flags, out) {
                let _ = h.send(conn::encode_packet(&ctrl, None)).await;
            }
        }
    }

    pub(crate) async fn link_from(&self, from: &Pid, to: &Pid) -> Result<(), NodeError> {
        let fx = write(&self.inner.procs).link(from, to);
        if to.node == self.inner.name {
            self.inner.apply(fx, None);
            return Ok(());
        }
        let h = self.inner.conn(to.node.as_str()).await?;
        let out = Outgoing::Link {
            from: from.clone(),
            to: to.clone(),
        };
        match op_flags::encode(h.flags, out) {
            Some((ctrl, _)) => {
                send_on(&h, to.node.as_str(), conn::encode_packet(&ctrl, None)).await
            }
            None => Ok(()),
        }
    }

    pub(crate) async fn unlink_from(&self, from: &Pid, to: &Pid) -> Result<(), NodeError> {
        write(&self.inner.procs).unlink(from, to);
        if to.node == self.inner.name {
            return Ok(());
        }
        if let Some(h) = self.inner.up(to.node.as_str()) {
            let id = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
            let out = Outgoing::Unlink {
                id,
                from: from.clone(),
                to: to.clone(),
            };
            if let Some((ctrl, _)) = op_flags::encode(h.flags, out) {
                let _ = h.send(conn::encode_packet(&ctrl, None)).await;
            }
        }
        Ok(())
    }

    /// A mailbox ended: free its name, signal links and monitors.
    pub(crate) fn process_exit(&self, pid: &Pid, reason: Term) {
        let (_, fx) = write(&self.inner.procs).exit(pid, &reason);
        self.inner.apply(fx, None);
    }
}

impl Inner {
    /// Puts `msg` in a local mailbox, if it exists.
    pub(super) fn deliver(&self, to: &Pid, msg: Term) {
        if let Some(tx) = read(&self.procs).mailbox(to) {
            let _ = tx.send(msg);
        }
    }

    /// Carries out the table's effects, in order. Signals for `via`'s peer
    /// go on that connection (the one a control message arrived on); others
    /// on the peer's current connection, if it has one.
    pub(super) fn apply(&self, fx: Vec<Effect>, via: Option<(&str, &ConnHandle)>) {
        for e in fx {
            match e {
                Effect::Deliver { to, msg } => self.deliver(&to, msg),
                Effect::Send { peer, signal } => match via {
                    Some((p, h)) if p == peer => self.send_signal(h, signal),
                    _ => {
                        if let Some(h) = self.up(&peer) {
                            self.send_signal(&h, signal);
                        }
                    }
                },
            }
        }
    }

    /// Encodes a signal for the connection's flags and queues it; a
    /// signal the peer did not negotiate is not sent (see [`op_flags`]).
    fn send_signal(&self, h: &ConnHandle, signal: Signal) {
        let out = match signal {
            Signal::Exit { from, to, reason } => Outgoing::Exit { from, to, reason },
            Signal::MonitorExit {
                from,
                to,
                reference,
                reason,
            } => Outgoing::MonitorExit {
                from,
                to,
                reference,
                reason,
            },
            Signal::UnlinkIdAck { id, from, to } => Outgoing::UnlinkIdAck { id, from, to },
        };
        match op_flags::encode(h.flags, out) {
            Some((c, pl)) => self.send_packet(h, &c, pl.as_ref()),
            None => debug!("signal not sent: the peer did not negotiate it"),
        }
    }
}

impl Dispatch for Inner {
    fn dispatch(&self, h: &ConnHandle, peer: &str, msg: Control) {
        match msg {
            // The hot path: a read lock, no effects list.
            Control::Send { to, msg, .. } => self.deliver(&to, msg),
            Control::RegSend { to, msg, .. } => {
                let procs = read(&self.procs);
                if let Some(tx) = procs.whereis(&to).and_then(|p| procs.mailbox(&p)) {
                    let _ = tx.send(msg);
                }
            }
            other => {
                let fx = write(&self.procs).incoming(peer, other);
                self.apply(fx, Some((peer, h)));
            }
        }
    }

    fn closed(&self, h: &ConnHandle, peer: &str, why: &ConnError) {
        if !self.remove_conn(h, peer) {
            // A newer connection replaced this one; nothing went down.
            return;
        }
        let _ = self.events.send(NodeEvent::Down {
            peer: peer.to_owned(),
            reason: why.to_string(),
        });
        info!(peer, "connection down: {why}");
        let fx = write(&self.procs).connection_lost(peer);
        self.apply(fx, None);
    }
}
