//! Mailboxes: the Rust side's processes. Each has a real pid that Erlang
//! nodes can send to, link to and monitor. A mailbox behaves like an Erlang
//! process that traps exits: exit signals and monitor notifications arrive
//! as ordinary messages, `{'EXIT', Pid, Reason}` and
//! `{'DOWN', Ref, process, Pid, Reason}`.

use std::time::Duration;

use erl_term::{Pid, Reference, Term};
use tokio::sync::mpsc;

use crate::node::{Node, NodeError};

/// A process of this node: a pid plus its incoming queue.
///
/// Dropping it ends the "process": its registered name is freed, linked
/// processes get an exit signal and monitors fire, both with reason
/// `normal`.
#[derive(Debug)]
pub struct Mailbox {
    pub(crate) node: Node,
    pub(crate) pid: Pid,
    pub(crate) rx: mpsc::UnboundedReceiver<Term>,
}

impl Mailbox {
    /// This mailbox's pid.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The node it belongs to.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Waits for the next message.
    pub async fn recv(&mut self) -> Option<Term> {
        self.rx.recv().await
    }

    /// Waits up to `timeout` for the next message.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Term> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Takes a message if one is already queued.
    pub fn try_recv(&mut self) -> Option<Term> {
        self.rx.try_recv().ok()
    }

    /// Sends `msg` to `to` (local or remote; connects on first use).
    pub async fn send(&self, to: &Pid, msg: Term) -> Result<(), NodeError> {
        self.node.send_from(&self.pid, to, msg).await
    }

    /// Sends `msg` to the process registered as `name` on `node`, the
    /// Erlang `{Name, Node} ! Msg`.
    pub async fn send_named(&self, name: &str, node: &str, msg: Term) -> Result<(), NodeError> {
        self.node.send_named_from(&self.pid, name, node, msg).await
    }

    /// Monitors a process; a `{'DOWN', Ref, process, Pid, Reason}` message
    /// follows when it exits or its node goes down.
    pub async fn monitor(&self, pid: &Pid) -> Result<Reference, NodeError> {
        self.node
            .monitor_from(&self.pid, Term::Pid(pid.clone()), pid.node.as_str())
            .await
    }

    /// Monitors the process registered as `name` on `node`.
    pub async fn monitor_named(&self, name: &str, node: &str) -> Result<Reference, NodeError> {
        let target = erl_term::Atom::new(name)
            .map(Term::Atom)
            .map_err(|_| NodeError::BadName(name.to_owned()))?;
        self.node.monitor_from(&self.pid, target, node).await
    }

    /// Removes a monitor.
    pub async fn demonitor(&self, reference: &Reference) {
        self.node.demonitor_from(&self.pid, reference).await;
    }

    /// Links to a process: if it exits, `{'EXIT', Pid, Reason}` arrives; if
    /// this mailbox is dropped, it gets an exit signal.
    pub async fn link(&self, pid: &Pid) -> Result<(), NodeError> {
        self.node.link_from(&self.pid, pid).await
    }

    /// Removes a link.
    pub async fn unlink(&self, pid: &Pid) -> Result<(), NodeError> {
        self.node.unlink_from(&self.pid, pid).await
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.node.process_exit(&self.pid, Term::atom("normal"));
    }
}
