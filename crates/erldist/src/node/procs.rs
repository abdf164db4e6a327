//! The process table: mailboxes, registered names, links and monitors.
//!
//! Plain data: its methods change the table and return the [`Effect`]s
//! (messages for local mailboxes, signals for peers) for the caller to
//! carry out after releasing its lock, so every rule here is tested
//! without a runtime or a socket.

use std::collections::{HashMap, HashSet};

use erl_term::{Atom, Pid, Reference, Term};

use crate::control::Control;

/// Something the table asks its owner to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Put `msg` in the local mailbox `to` (if it still exists).
    Deliver {
        /// A local process.
        to: Pid,
        /// The message, e.g. `{'EXIT', From, Reason}`.
        msg: Term,
    },
    /// Send a signal to a remote process on `peer`.
    Send {
        /// The peer node.
        peer: String,
        /// What to send; the connection encodes it for the peer's flags.
        signal: Signal,
    },
}

/// A signal from a local process to a remote one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    /// A link broke: EXIT (or PAYLOAD_EXIT).
    Exit {
        /// The local process.
        from: Pid,
        /// The remote linked process.
        to: Pid,
        /// Why.
        reason: Term,
    },
    /// A monitored local process went down: MONITOR_P_EXIT.
    MonitorExit {
        /// The monitored process as the watcher named it (pid or name).
        from: Term,
        /// The remote watcher.
        to: Pid,
        /// The monitor.
        reference: Reference,
        /// Why.
        reason: Term,
    },
    /// Acknowledges the peer's UNLINK_ID.
    UnlinkIdAck {
        /// The peer's unlink id, echoed.
        id: Term,
        /// The local process.
        from: Pid,
        /// The remote process.
        to: Pid,
    },
}

/// One process of the table.
#[derive(Debug)]
struct Proc<M> {
    pid: Pid,
    mailbox: M,
    links: HashSet<Pid>,
    /// Processes monitoring this one, with the target as they named it (a
    /// pid, or a registered name, which the DOWN message reports back).
    monitored_by: Vec<(Pid, Reference, Term)>,
    /// Monitors this process holds: reference -> (node, target).
    monitors: HashMap<Reference, (String, Term)>,
    name: Option<Atom>,
}

/// The local processes of one node. `M` is a process's mailbox handle
/// (a channel sender in the node; anything in tests).
#[derive(Debug)]
pub(crate) struct ProcTable<M> {
    node: Atom,
    creation: u32,
    next_id: u32,
    procs: HashMap<u32, Proc<M>>,
    names: HashMap<Atom, Pid>,
}

/// `{'EXIT', From, Reason}`.
fn exit_msg(from: &Pid, reason: Term) -> Term {
    Term::Tuple(vec![Term::atom("EXIT"), Term::Pid(from.clone()), reason])
}

/// `{'DOWN', Ref, process, Target, Reason}`.
pub(crate) fn down_msg(r: &Reference, target: Term, reason: Term) -> Term {
    Term::Tuple(vec![
        Term::atom("DOWN"),
        Term::Reference(r.clone()),
        Term::atom("process"),
        target,
        reason,
    ])
}

/// What a DOWN message names: the pid, or `{Name, Node}` for a monitor by
/// registered name, as Erlang reports it.
pub(crate) fn down_target(target: Term, node: &str) -> Term {
    match (target, Atom::new(node)) {
        (Term::Atom(a), Ok(n)) => Term::Tuple(vec![Term::Atom(a), Term::Atom(n)]),
        (t, _) => t,
    }
}

/// The key of a local pid in the table.
fn key(p: &Pid) -> u32 {
    p.id | (p.serial << 15)
}

impl<M> ProcTable<M> {
    /// An empty table for the node `node` of creation `creation`.
    pub(crate) fn new(node: Atom, creation: u32) -> Self {
        Self {
            node,
            creation,
            next_id: 1,
            procs: HashMap::new(),
            names: HashMap::new(),
        }
    }

    /// Adds a process; returns its pid.
    pub(crate) fn spawn(&mut self, mailbox: M) -> Pid {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        // Classic pids carry 15 bits of number and 13 of serial.
        let pid = Pid {
            node: self.node.clone(),
            id: id & 0x7fff,
            serial: (id >> 15) & 0x1fff,
            creation: self.creation,
        };
        self.procs.insert(
            key(&pid),
            Proc {
                pid: pid.clone(),
                mailbox,
                links: HashSet::new(),
                monitored_by: Vec::new(),
                monitors: HashMap::new(),
                name: None,
            },
        );
        pid
    }

    /// Registers `pid` as `name`; false if the name is taken (or the
    /// process is gone).
    pub(crate) fn register(&mut self, name: Atom, pid: &Pid) -> bool {
        if self.names.contains_key(&name) {
            return false;
        }
        let Some(p) = self.proc_mut(pid) else {
            return false;
        };
        p.name = Some(name.clone());
        self.names.insert(name, pid.clone());
        true
    }

    /// The process registered as `name`.
    pub(crate) fn whereis(&self, name: &Atom) -> Option<Pid> {
        self.names.get(name).cloned()
    }

    /// The local process a monitor or demonitor names: a pid, or a
    /// registered name.
    pub(crate) fn resolve(&self, target: &Term) -> Option<Pid> {
        match target {
            Term::Pid(p) => Some(p.clone()),
            Term::Atom(a) => self.whereis(a),
            _ => None,
        }
    }

    /// The mailbox of a live local process of this incarnation.
    pub(crate) fn mailbox(&self, to: &Pid) -> Option<&M> {
        if to.node != self.node || to.creation != self.creation {
            return None;
        }
        self.procs.get(&key(to)).map(|p| &p.mailbox)
    }

    fn proc_mut(&mut self, pid: &Pid) -> Option<&mut Proc<M>> {
        if pid.node != self.node {
            return None;
        }
        self.procs.get_mut(&key(pid))
    }

    /// `from` links to `to`. A local `to` that does not exist sends `from`
    /// an exit signal `noproc`; for a remote `to` the caller sends LINK.
    pub(crate) fn link(&mut self, from: &Pid, to: &Pid) -> Vec<Effect> {
        if let Some(p) = self.proc_mut(from) {
            p.links.insert(to.clone());
        }
        if to.node != self.node {
            return Vec::new();
        }
        match self.proc_mut(to) {
            Some(p) => {
                p.links.insert(from.clone());
                Vec::new()
            }
            None => vec![Effect::Deliver {
                to: from.clone(),
                msg: exit_msg(to, Term::atom("noproc")),
            }],
        }
    }

    /// Removes the link between `a` and `b` on whichever ends are local.
    pub(crate) fn unlink(&mut self, a: &Pid, b: &Pid) {
        if let Some(p) = self.proc_mut(a) {
            p.links.remove(b);
        }
        if let Some(p) = self.proc_mut(b) {
            p.links.remove(a);
        }
    }

    /// `from` monitors `target` (a pid or a name) on `node` under
    /// reference `r`. Remote: recorded here, so that the connection's loss
    /// fires it; the caller tells the peer when its flags allow. Local: a
    /// target that does not exist fires at once with `noproc`.
    pub(crate) fn monitor(
        &mut self,
        from: &Pid,
        target: Term,
        node: &str,
        r: &Reference,
    ) -> Vec<Effect> {
        if let Some(p) = self.proc_mut(from) {
            p.monitors
                .insert(r.clone(), (node.to_owned(), target.clone()));
        }
        if node != self.node.as_str() {
            return Vec::new();
        }
        let watched = self.resolve(&target).and_then(|t| self.proc_mut(&t));
        match watched {
            Some(p) => {
                p.monitored_by.push((from.clone(), r.clone(), target));
                Vec::new()
            }
            None => self.fire_down(from, r, down_target(target, node), Term::atom("noproc")),
        }
    }

    /// Drops `from`'s monitor `r`. Returns `(node, target)` when the
    /// monitored process is remote, for the caller to send DEMONITOR_P.
    pub(crate) fn demonitor(&mut self, from: &Pid, r: &Reference) -> Option<(String, Term)> {
        let (node, target) = self.proc_mut(from)?.monitors.remove(r)?;
        if node != self.node.as_str() {
            return Some((node, target));
        }
        if let Some(p) = self.resolve(&target).and_then(|t| self.proc_mut(&t)) {
            p.monitored_by.retain(|(_, x, _)| x != r);
        }
        None
    }

    /// The watcher's monitor `r` fired: forget it and tell the watcher.
    fn fire_down(&mut self, to: &Pid, r: &Reference, target: Term, reason: Term) -> Vec<Effect> {
        if let Some(p) = self.proc_mut(to) {
            p.monitors.remove(r);
        }
        vec![Effect::Deliver {
            to: to.clone(),
            msg: down_msg(r, target, reason),
        }]
    }

    /// A process ended: free its name, signal its links and monitors.
    /// Returns its mailbox handle, if it existed.
    pub(crate) fn exit(&mut self, pid: &Pid, reason: &Term) -> (Option<M>, Vec<Effect>) {
        if pid.node != self.node {
            return (None, Vec::new());
        }
        let Some(p) = self.procs.remove(&key(pid)) else {
            return (None, Vec::new());
        };
        if let Some(n) = &p.name {
            if self.names.get(n) == Some(pid) {
                self.names.remove(n);
            }
        }
        let mut fx = Vec::new();
        for l in &p.links {
            if l.node == self.node {
                if let Some(o) = self.proc_mut(l) {
                    o.links.remove(pid);
                }
                fx.push(Effect::Deliver {
                    to: l.clone(),
                    msg: exit_msg(pid, reason.clone()),
                });
            } else {
                fx.push(Effect::Send {
                    peer: l.node.to_string(),
                    signal: Signal::Exit {
                        from: pid.clone(),
                        to: l.clone(),
                        reason: reason.clone(),
                    },
                });
            }
        }
        for (watcher, r, named) in p.monitored_by {
            if watcher.node == self.node {
                let t = down_target(named, self.node.as_str());
                fx.extend(self.fire_down(&watcher, &r, t, reason.clone()));
            } else {
                // The peer turns a name into {Name, ThisNode} itself.
                fx.push(Effect::Send {
                    peer: watcher.node.to_string(),
                    signal: Signal::MonitorExit {
                        from: named,
                        to: watcher.clone(),
                        reference: r,
                        reason: reason.clone(),
                    },
                });
            }
        }
        (Some(p.mailbox), fx)
    }

    /// A control message from `peer` for a local process (everything but
    /// SEND and REG_SEND, which the caller delivers on its fast path).
    pub(crate) fn incoming(&mut self, peer: &str, msg: Control) -> Vec<Effect> {
        match msg {
            Control::Send { to, msg, .. } => vec![Effect::Deliver { to, msg }],
            Control::RegSend { to, msg, .. } => self
                .whereis(&to)
                .map(|to| Effect::Deliver { to, msg })
                .into_iter()
                .collect(),
            Control::Link { from, to } => match self.proc_mut(&to) {
                Some(p) => {
                    p.links.insert(from);
                    Vec::new()
                }
                None => vec![Effect::Send {
                    peer: peer.to_owned(),
                    signal: Signal::Exit {
                        from: to,
                        to: from,
                        reason: Term::atom("noproc"),
                    },
                }],
            },
            Control::UnlinkId { id, from, to } => {
                if let Some(p) = self.proc_mut(&to) {
                    p.links.remove(&from);
                }
                vec![Effect::Send {
                    peer: peer.to_owned(),
                    signal: Signal::UnlinkIdAck {
                        id,
                        from: to,
                        to: from,
                    },
                }]
            }
            Control::Exit {
                from, to, reason, ..
            } => {
                if let Some(p) = self.proc_mut(&to) {
                    p.links.remove(&from);
                }
                vec![Effect::Deliver {
                    to,
                    msg: exit_msg(&from, reason),
                }]
            }
            Control::MonitorP {
                from,
                to,
                reference,
            } => {
                let watched = self.resolve(&to).and_then(|t| self.proc_mut(&t));
                match watched {
                    Some(p) => {
                        p.monitored_by.push((from, reference, to));
                        Vec::new()
                    }
                    None => vec![Effect::Send {
                        peer: peer.to_owned(),
                        signal: Signal::MonitorExit {
                            from: to,
                            to: from,
                            reference,
                            reason: Term::atom("noproc"),
                        },
                    }],
                }
            }
            Control::DemonitorP { to, reference, .. } => {
                if let Some(p) = self.resolve(&to).and_then(|t| self.proc_mut(&t)) {
                    p.monitored_by.retain(|(_, r, _)| *r != reference);
                }
                Vec::new()
            }
            Control::MonitorPExit {
                from,
                to,
                reference,
                reason,
            } => self.fire_down(&to, &reference, down_target(from, peer), reason),
            Control::UnlinkIdAck { .. } | Control::Other(_) => Vec::new(),
        }
    }

    /// The connection to `peer` went down: links to its processes break
    /// and monitors of them fire, both with `noconnection`; its processes'
    /// monitors of local ones are forgotten.
    pub(crate) fn connection_lost(&mut self, peer: &str) -> Vec<Effect> {
        let reason = Term::atom("noconnection");
        let mut exits = Vec::new();
        let mut downs = Vec::new();
        for p in self.procs.values_mut() {
            let gone: Vec<Pid> = p
                .links
                .iter()
                .filter(|l| l.node.as_str() == peer)
                .cloned()
                .collect();
            for l in gone {
                p.links.remove(&l);
                exits.push(Effect::Deliver {
                    to: p.pid.clone(),
                    msg: exit_msg(&l, reason.clone()),
                });
            }
            p.monitored_by.retain(|(w, _, _)| w.node.as_str() != peer);
            let lost: Vec<Reference> = p
                .monitors
                .iter()
                .filter(|(_, (n, _))| n == peer)
                .map(|(r, _)| r.clone())
                .collect();
            for r in lost {
                if let Some((_, target)) = p.monitors.remove(&r) {
                    downs.push(Effect::Deliver {
                        to: p.pid.clone(),
                        msg: down_msg(&r, down_target(target, peer), reason.clone()),
                    });
                }
            }
        }
        exits.extend(downs);
        exits
    }
}

#[cfg(test)]
#[path = "procs_tests.rs"]
mod tests;
