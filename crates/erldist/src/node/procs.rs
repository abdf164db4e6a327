//! The process table: mailboxes, registered names, links and monitors,
//! and the control messages peers send to them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use erl_term::{Atom, Pid, Reference, Term};
use tokio::sync::mpsc;
use tracing::info;

use super::conns::send_on;
use super::{atom, read, write, Inner, Node, NodeError, NodeEvent};
use crate::conn::{self, ConnError, ConnHandle, Dispatch};
use crate::control::{build, Control};

#[derive(Debug, Default)]
pub(super) struct Proc {
    pub(super) tx: Option<mpsc::UnboundedSender<Term>>,
    pub(super) links: HashSet<Pid>,
    /// Processes monitoring this one, with the target as they named it (a
    /// pid, or a registered name, which the DOWN message reports back).
    pub(super) monitored_by: Vec<(Pid, Reference, Term)>,
    /// Monitors this process holds: reference -> (node, target).
    pub(super) monitors: HashMap<Reference, (String, Term)>,
    pub(super) name: Option<Atom>,
}

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
            let to = self.inner.whereis(&a);
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
            self.inner.with_proc(from, |p| {
                p.monitors
                    .insert(r.clone(), (node.to_owned(), target.clone()));
            });
            let exists = self
                .inner
                .resolve(&target)
                .as_ref()
                .map(|p| {
                    self.inner.with_proc(p, |pr| {
                        pr.monitored_by
                            .push((from.clone(), r.clone(), target.clone()))
                    })
                })
                .unwrap_or(false);
            if !exists {
                let t = down_target(target, node);
                self.inner.fire_down(from, &r, t, Term::atom("noproc"));
            }
            return Ok(r);
        }
        // Connect first: a monitor recorded before the connection exists
        // would be fired by the failure of a connection it never used.
        let h = self.inner.conn(node).await?;
        self.inner.with_proc(from, |p| {
            p.monitors
                .insert(r.clone(), (node.to_owned(), target.clone()));
        });
        let packet = conn::encode_packet(&build::monitor(from, target, &r), None);
        send_on(&h, node, packet).await?;
        Ok(r)
    }

    pub(crate) async fn demonitor_from(&self, from: &Pid, r: &Reference) {
        let mut removed = None;
        self.inner
            .with_proc(from, |p| removed = p.monitors.remove(r));
        let Some((node, target)) = removed else {
            return;
        };
        if node == self.name() {
            if let Some(t) = self.inner.resolve(&target) {
                self.inner
                    .with_proc(&t, |p| p.monitored_by.retain(|(_, x, _)| x != r));
            }
            return;
        }
        if let Some(h) = self.inner.up(&node) {
            let _ = h
                .send(conn::encode_packet(
                    &build::demonitor(from, target, r),
                    None,
                ))
                .await;
        }
    }

    pub(crate) async fn link_from(&self, from: &Pid, to: &Pid) -> Result<(), NodeError> {
        self.inner.with_proc(from, |p| {
            p.links.insert(to.clone());
        });
        if to.node == self.inner.name {
            let ok = self.inner.with_proc(to, |p| {
                p.links.insert(from.clone());
            });
            if !ok {
                self.inner.deliver_exit(from, to, Term::atom("noproc"));
            }
            return Ok(());
        }
        let h = self.inner.conn(to.node.as_str()).await?;
        let packet = conn::encode_packet(&build::link(from, to), None);
        send_on(&h, to.node.as_str(), packet).await
    }

    pub(crate) async fn unlink_from(&self, from: &Pid, to: &Pid) -> Result<(), NodeError> {
        self.inner.with_proc(from, |p| {
            p.links.remove(to);
        });
        if to.node == self.inner.name {
            self.inner.with_proc(to, |p| {
                p.links.remove(from);
            });
            return Ok(());
        }
        if let Some(h) = self.inner.up(to.node.as_str()) {
            let id = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
            let _ = h
                .send(conn::encode_packet(&build::unlink_id(id, from, to), None))
                .await;
        }
        Ok(())
    }

    /// A mailbox ended: free its name, signal links and monitors.
    pub(crate) fn process_exit(&self, pid: &Pid, reason: Term) {
        let removed = write(&self.inner.procs).remove(&key(pid));
        let Some(p) = removed else { return };
        if let Some(n) = &p.name {
            let mut names = write(&self.inner.names);
            if names.get(n) == Some(pid) {
                names.remove(n);
            }
        }
        for l in &p.links {
            if l.node == self.inner.name {
                self.inner.with_proc(l, |o| {
                    o.links.remove(pid);
                });
                self.inner.deliver_exit(l, pid, reason.clone());
            } else if let Some(h) = self.inner.up(l.node.as_str()) {
                let (c, pl) = build::exit(h.flags, pid, l, reason.clone());
                self.inner.send_packet(&h, &c, pl.as_ref());
            }
        }
        for (watcher, r, named) in &p.monitored_by {
            if watcher.node == self.inner.name {
                let t = down_target(named.clone(), self.name());
                self.inner.fire_down(watcher, r, t, reason.clone());
            } else if let Some(h) = self.inner.up(watcher.node.as_str()) {
                // The peer turns a name into {Name, ThisNode} itself.
                let (c, pl) =
                    build::monitor_exit(h.flags, named.clone(), watcher, r, reason.clone());
                self.inner.send_packet(&h, &c, pl.as_ref());
            }
        }
    }
}

impl Inner {
    /// The local process a monitor or demonitor names: a pid, or a
    /// registered name.
    pub(super) fn resolve(&self, target: &Term) -> Option<Pid> {
        match target {
            Term::Pid(p) => Some(p.clone()),
            Term::Atom(a) => self.whereis(a),
            _ => None,
        }
    }

    pub(super) fn whereis(&self, name: &Atom) -> Option<Pid> {
        read(&self.names).get(name).cloned()
    }

    /// Runs `f` on a local process; returns whether it exists.
    pub(super) fn with_proc(&self, pid: &Pid, f: impl FnOnce(&mut Proc)) -> bool {
        if pid.node != self.name {
            return false;
        }
        match write(&self.procs).get_mut(&key(pid)) {
            Some(p) => {
                f(p);
                true
            }
            None => false,
        }
    }

    pub(super) fn deliver(&self, to: &Pid, msg: Term) {
        if to.node != self.name || to.creation != self.creation {
            return;
        }
        let procs = read(&self.procs);
        if let Some(tx) = procs.get(&key(to)).and_then(|p| p.tx.as_ref()) {
            let _ = tx.send(msg);
        }
    }

    pub(super) fn deliver_exit(&self, to: &Pid, from: &Pid, reason: Term) {
        self.deliver(
            to,
            Term::Tuple(vec![Term::atom("EXIT"), Term::Pid(from.clone()), reason]),
        );
    }

    pub(super) fn fire_down(&self, to: &Pid, r: &Reference, target: Term, reason: Term) {
        self.with_proc(to, |p| {
            p.monitors.remove(r);
        });
        self.deliver(
            to,
            Term::Tuple(vec![
                Term::atom("DOWN"),
                Term::Reference(r.clone()),
                Term::atom("process"),
                target,
                reason,
            ]),
        );
    }
}

/// What a DOWN message names: the pid, or `{Name, Node}` for a monitor by
/// registered name, as Erlang reports it.
fn down_target(target: Term, node: &str) -> Term {
    match (target, Atom::new(node)) {
        (Term::Atom(a), Ok(n)) => Term::Tuple(vec![Term::Atom(a), Term::Atom(n)]),
        (t, _) => t,
    }
}

/// The key of a local pid in the process table.
pub(super) fn key(p: &Pid) -> u32 {
    p.id | (p.serial << 15)
}

impl Dispatch for Inner {
    fn dispatch(&self, h: &ConnHandle, peer: &str, msg: Control) {
        match msg {
            Control::Send { to, msg, .. } => self.deliver(&to, msg),
            Control::RegSend { to, msg, .. } => {
                if let Some(pid) = self.whereis(&to) {
                    self.deliver(&pid, msg);
                }
            }
            Control::Link { from, to } => {
                let ok = self.with_proc(&to, |p| {
                    p.links.insert(from.clone());
                });
                if !ok {
                    let (c, pl) = build::exit(h.flags, &to, &from, Term::atom("noproc"));
                    self.send_packet(h, &c, pl.as_ref());
                }
            }
            Control::UnlinkId { id, from, to } => {
                self.with_proc(&to, |p| {
                    p.links.remove(&from);
                });
                self.send_packet(h, &build::unlink_id_ack(id, &to, &from), None);
            }
            Control::UnlinkIdAck { .. } | Control::Other(_) => {}
            Control::Exit {
                from, to, reason, ..
            } => {
                self.with_proc(&to, |p| {
                    p.links.remove(&from);
                });
                self.deliver_exit(&to, &from, reason);
            }
            Control::MonitorP {
                from,
                to,
                reference,
            } => {
                let ok = self
                    .resolve(&to)
                    .map(|p| {
                        self.with_proc(&p, |pr| {
                            pr.monitored_by
                                .push((from.clone(), reference.clone(), to.clone()))
                        })
                    })
                    .unwrap_or(false);
                if !ok {
                    let (c, pl) =
                        build::monitor_exit(h.flags, to, &from, &reference, Term::atom("noproc"));
                    self.send_packet(h, &c, pl.as_ref());
                }
            }
            Control::DemonitorP { to, reference, .. } => {
                if let Some(p) = self.resolve(&to) {
                    self.with_proc(&p, |pr| pr.monitored_by.retain(|(_, r, _)| *r != reference));
                }
            }
            Control::MonitorPExit {
                from,
                to,
                reference,
                reason,
            } => self.fire_down(&to, &reference, down_target(from, peer), reason),
        }
    }

    fn closed(&self, h: &ConnHandle, peer: &str, why: &ConnError) {
        if !self.remove_conn(h, peer) {
            // A newer connection replaced this one; nothing went down.
            return;
        }
        let _ = self
            .events
            .send(NodeEvent::Down(peer.to_owned(), why.to_string()));
        info!(peer, "connection down: {why}");
        let reason = Term::atom("noconnection");
        let mut exits = Vec::new();
        let mut downs = Vec::new();
        {
            let mut procs = write(&self.procs);
            for p in procs.values_mut() {
                let owner_pid = |links: &HashSet<Pid>| -> Vec<Pid> {
                    links
                        .iter()
                        .filter(|l| l.node.as_str() == peer)
                        .cloned()
                        .collect()
                };
                let gone = owner_pid(&p.links);
                for l in &gone {
                    p.links.remove(l);
                }
                p.monitored_by.retain(|(w, _, _)| w.node.as_str() != peer);
                let lost: Vec<Reference> = p
                    .monitors
                    .iter()
                    .filter(|(_, (n, _))| n == peer)
                    .map(|(r, _)| r.clone())
                    .collect();
                let tx = p.tx.clone();
                for r in lost {
                    if let Some((_, target)) = p.monitors.remove(&r) {
                        downs.push((tx.clone(), r, down_target(target, peer)));
                    }
                }
                for l in gone {
                    exits.push((tx.clone(), l));
                }
            }
        }
        for (tx, from) in exits {
            if let Some(tx) = tx {
                let _ = tx.send(Term::Tuple(vec![
                    Term::atom("EXIT"),
                    Term::Pid(from),
                    reason.clone(),
                ]));
            }
        }
        for (tx, r, target) in downs {
            if let Some(tx) = tx {
                let _ = tx.send(Term::Tuple(vec![
                    Term::atom("DOWN"),
                    Term::Reference(r),
                    Term::atom("process"),
                    target,
                    reason.clone(),
                ]));
            }
        }
    }
}
