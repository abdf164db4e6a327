//! The node's side of cluster membership ([`crate::cluster`]): a task that
//! reads the member source, feeds [`Membership`] and carries its effects
//! out (the directory `dial` consults, dials in their own tasks), and the
//! directory itself.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info};

use super::{read, write, Node, NodeEvent};
use crate::cluster::{Effect, Member, MemberChange, MemberSource, Membership};

/// The members' records, by node name: what `dial` uses instead of EPMD.
pub(super) type Directory = std::sync::RwLock<HashMap<String, Member>>;

/// Bound on queued changes between the source task and the driver: a
/// source that outruns the driver waits (etcd keeps the events).
const CHANGES: usize = 1024;

impl Node {
    /// The current members of the cluster this node follows
    /// ([`crate::NodeConfig::with_discovery`]), by name, this node included
    /// when it is published; empty without discovery.
    pub fn cluster(&self) -> Vec<Member> {
        let mut v: Vec<Member> = read(&self.inner.directory).values().cloned().collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    /// Starts following the configured member source (from `start`).
    pub(super) fn spawn_cluster(&self) {
        let Some(d) = self.inner.cfg.discovery.clone() else {
            return;
        };
        let source = d.open();
        let (tx, rx) = mpsc::channel(CHANGES);
        // The source runs in its own task so that the driver's select
        // never cancels it half-way through a read.
        let reader = tokio::spawn(read_source(source, tx));
        let driver = tokio::spawn(drive(self.internal(), rx, self.inner.events.subscribe()));
        let mut tasks = super::lock(&self.inner.tasks);
        tasks.push(reader);
        tasks.push(driver);
    }
}

async fn read_source(mut source: Box<dyn MemberSource>, tx: mpsc::Sender<MemberChange>) {
    loop {
        let c = source.next().await;
        if tx.send(c).await.is_err() {
            return;
        }
    }
}

/// The I/O edge: applies changes, dial results and connection events to
/// the pure [`Membership`], and does what it says.
async fn drive(
    node: Node,
    mut changes: mpsc::Receiver<MemberChange>,
    mut events: broadcast::Receiver<NodeEvent>,
) {
    let mut m = Membership::new(node.name());
    let (done_tx, mut done) = mpsc::unbounded_channel::<(String, bool)>();
    loop {
        let wake = m.next_wakeup();
        let effects = tokio::select! {
            c = changes.recv() => match c {
                Some(c) => {
                    match &c {
                        MemberChange::Up(mb) if !m.is_member(&mb.node) => {
                            info!(member = %mb.node, "cluster member joined");
                        }
                        MemberChange::Down(n) if m.is_member(n) => {
                            info!(member = %n, "cluster member left");
                        }
                        _ => {}
                    }
                    m.change(c)
                }
                None => return,
            },
            Some((peer, ok)) = done.recv() => {
                if ok {
                    m.connected(&peer);
                } else {
                    m.failed(&peer, Instant::now());
                }
                Vec::new()
            }
            ev = events.recv() => {
                match ev {
                    Ok(NodeEvent::Up(peer)) => m.connected(&peer),
                    Ok(NodeEvent::Down { peer, .. }) => m.down(&peer, Instant::now()),
                    Ok(_) => {}
                    // Missed events: the dials' own results still arrive.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                Vec::new()
            }
            () = sleep_until(wake) => m.tick(Instant::now()),
        };
        for e in effects {
            match e {
                Effect::Learn(mb) => {
                    write(&node.inner.directory).insert(mb.node.clone(), mb);
                }
                Effect::Forget(n) => {
                    write(&node.inner.directory).remove(&n);
                }
                Effect::Connect(peer) => {
                    let node = node.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let r = node.connect(&peer).await;
                        if let Err(e) = &r {
                            debug!(member = %peer, "cannot connect to cluster member: {e}");
                        }
                        let _ = done.send((peer, r.is_ok()));
                    });
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
